"""Every command the README shows is run, on a spool like a person's; a command that breaks fails here.

How README.md is read (README writers: follow this, and the test keeps the README honest):

- Fenced blocks tagged ``sh`` or ``bash`` are commands: one per line (a trailing backslash continues
  it), each run with ``bash -c`` and expected to exit 0. Untagged fences (layouts, usage synopses)
  and other languages are not run, except ``python`` (below).
- A trailing comment is the command's explanation. ``# exits N`` in it expects exit status N;
  ``# not run`` (with any reason after it) skips that line. ``make test``, ``make check``, ``make stress``,
  ``make bench`` and ``make lint`` are never run here (the suite itself, its long form, timing).
- Human play (``make play``, ``gymrec-play ENV`` without ``--headless``) opens a real window in
  Xvfb and is quit at once with Esc (skipped, with the reason, without Xvfb/xdotool).
- The world the commands see, in a fresh copy for every command:
  - ``~`` is a sandbox home. ``~/.local/share/gymrec/spool`` (also the default spool) holds
    ALE/Breakout-v5 episodes as a person leaves them: a rewound parent (``branched``) and its branch,
    a discarded episode, a ``--takeover`` episode, and one quit with Esc.
  - ``~/datasets/NAME`` is a local gymrec dataset: ``doom`` of VizdoomBasic-v1 episodes, any other
    name of the spool's episodes.
  - Hub datasets are ``someone/NAME`` or ``you/NAME`` (also ``hf://...``, ``hf://datasets/...``),
    served by the suite's own Hub (``$HF_ENDPOINT``) with the spool's episodes (config ``ale-breakout-v5``).
  - An episode id prefix is written ``3f2a`` (or ``EPISODE_ID``): it is replaced by a prefix of
    the quit episode. ``'#0'`` is an index and needs no replacing.
  - The working directory holds only links to the repo's top-level files and ``.venv`` (what
    ``make`` needs), so relative outputs (``breakout.mp4``, ``videos/``) land there, and
    ``$MINARI_DATASETS_PATH`` is a fresh folder.
- A ``python`` block runs with the venv's python in the sandbox of the first command of the
  ``sh`` block just before it (so it sees what that block exported), or in a fresh one when the
  block before it is not ``sh``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pygame
import pytest

from tests.conftest import BIN, REPO
from tests.export_helpers import to_local_dataset, tree
from tests.recording import record_episode
from tests.test_play_human import DOWN, UP, ScriptedClock, play, tap
from tests.xwindow import stop, xvfb

README = REPO / "README.md"
NEVER_RUN = ("make test", "make check", "make stress", "make bench", "make lint")
EPISODE_PLACEHOLDERS = ("3f2a", "EPISODE_ID")
HUB_REPO = re.compile(r"\b(?:someone|you)/[\w.-]+")
LOCAL_DATASET = re.compile(r"~/datasets/([\w.-]+)")
pytestmark = pytest.mark.slow  # every README command end to end: make test, not make check
ENV = "ALE/Breakout-v5"


@dataclass(frozen=True)
class Command:
    line: int  # in README.md, for the failure message
    text: str  # without its comment
    comment: str
    block: int  # index of its fenced block
    language: str

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.text[:50]}"


def _split_comment(line: str) -> tuple[str, str]:
    """The command and its trailing ``# comment`` (a # inside quotes, as in '#0', is not one)."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def readme_commands(text: str) -> list[Command]:
    out: list[Command] = []
    language: str | None = None
    block, start = -1, 0
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            if language is None:
                language, block, start, body = line[3:].strip(), block + 1, number, []
                continue
            if language in ("sh", "bash"):
                pending = ""
                for offset, raw in enumerate(body):
                    pending += raw.rstrip("\\").rstrip() + " " if raw.rstrip().endswith("\\") else raw
                    if raw.rstrip().endswith("\\"):
                        continue
                    command, comment = _split_comment(pending.strip())
                    if command:
                        out.append(Command(start + 1 + offset, command, comment, block, language))
                    pending = ""
            elif language == "python":
                out.append(Command(start + 1, "\n".join(body), "", block, language))
            language = None
            continue
        if language is not None:
            body.append(line)
    return out


COMMANDS = readme_commands(README.read_text(encoding="utf-8"))


def _record_human_spool(spool: Path) -> dict[str, Path]:
    """A person's session, through the real window (dummy driver) and keymap, as tests/test_play_human.py does."""
    rewound = {0: tap(pygame.K_n), 1: [(DOWN, pygame.K_RIGHT)], 11: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_r)],
               14: [(UP, pygame.K_r)], 17: [(DOWN, pygame.K_ESCAPE)]}
    parent, branch = play(ENV, rewound, spool, seed=3)
    discarded = {0: tap(pygame.K_n), 4: tap(pygame.K_BACKSPACE), 6: tap(pygame.K_n), 10: [(DOWN, pygame.K_ESCAPE)]}
    gone, quit_ = play(ENV, discarded, spool, seed=5)
    assert (parent.end_reason, branch.end_reason, gone.end_reason, quit_.end_reason) == ("branched", "quit", "discarded", "quit")
    return {"quit": quit_.path, "takeover": _record_takeover(spool)}


def _record_takeover(spool: Path) -> Path:
    from gymrec.recorder.config import PlayConfig
    from gymrec.recorder.controllers import TakeoverController
    from gymrec.recorder.session import Session
    from gymrec.recorder.window import GameWindow
    from gymrec.shared.envs.backends import make_env
    from gymrec.shared.keymaps.keymap import build_resolver, load_keymap

    made = make_env(ENV, {})
    config = PlayConfig(env_id=ENV, spool=spool, seed=9, fps=1000.0, player="tester", agent="random", takeover=True)
    keymap = load_keymap(made.backend)
    script = {0: tap(pygame.K_n), 3: tap(pygame.K_t), 4: [(DOWN, pygame.K_LEFT)], 6: [(UP, pygame.K_LEFT)],
              8: [(DOWN, pygame.K_ESCAPE)]}
    window = GameWindow(title="test", fps=1000.0, scale=1, help_lines=[], clock=ScriptedClock(script))
    window.open((210, 160, 3))
    pygame.event.clear()
    source = TakeoverController(window, build_resolver(keymap, made.env), {"source": keymap.source}, lambda _obs: 1, "random")
    try:
        (sealed,) = Session(config, made, source).run().sealed
    finally:
        source.close()
        made.env.close()
    return sealed


@dataclass(frozen=True)
class World:
    home: Path  # the template home, copied for every command
    prefix: str  # of the quit episode
    endpoint: str


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from tests.hubserver import running_hub

    # The README's make commands run in a sandbox that links the repo's .venv: it must be up to date,
    # as it is after `make play` or `make test` (a stale one would be rebuilt from the sandbox).
    subprocess.run(["make", "-s", ".venv/.installed"], cwd=REPO, check=True, capture_output=True, timeout=900)
    root = tmp_path_factory.mktemp("readme")
    home = root / "home"
    spool = home / ".local" / "share" / "gymrec" / "spool"
    with pytest.MonkeyPatch.context() as patch:  # module scope: the suite's per-test dummy driver is not set yet
        patch.setenv("SDL_VIDEODRIVER", "dummy")
        spool.mkdir(parents=True)
        made = _record_human_spool(spool)
    datasets = home / "datasets"
    datasets.mkdir()
    doom_spool = root / "doom-spool"
    names = sorted({m for cmd in COMMANDS for m in LOCAL_DATASET.findall(cmd.text)})
    if "doom" in names:  # only when the README names one: VizDoom takes seconds to start
        record_episode(doom_spool, "VizdoomBasic-v1", 30, 1)
    for name in names:
        to_local_dataset(doom_spool if name == "doom" else spool, datasets / name, root)
    # the Hub repos hold the local breakout dataset's files when the README has one (one upload, not two)
    breakout = datasets / "breakout" if "breakout" in names else to_local_dataset(spool, root / "hub-dataset", root)
    with running_hub("hf_test_token", root / "hub") as hub:
        for repo in sorted({m for cmd in COMMANDS for m in HUB_REPO.findall(cmd.text)}):
            hub.seed_repo(repo, tree(breakout))
        yield World(home, made["quit"].stem[:8], hub.endpoint)


@dataclass(frozen=True)
class Sandbox:
    home: Path
    cwd: Path
    env: dict[str, str]


def _sandbox(world: World, root: Path) -> Sandbox:
    home, cwd = root / "home", root / "cwd"
    shutil.copytree(world.home, home, symlinks=True)
    cwd.mkdir()
    # make needs the Makefile, what its .venv stamp depends on (pyproject.toml, constraints.txt, ...)
    # and the .venv: the top-level files are linked (no folder, no dotfile such as a .env holding a
    # token), so outputs land in the sandbox.
    for path in [*(p for p in REPO.iterdir() if p.is_file() and not p.name.startswith(".")), REPO / ".venv"]:
        (cwd / path.name).symlink_to(path)
    drop = ("GYMREC_SPOOL", "XDG_DATA_HOME", "MINARI_DATASETS_PATH", "HF_TOKEN", "HF_HOME")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env |= {"HOME": str(home), "HF_ENDPOINT": world.endpoint, "HF_HOME": str(root / "hf"), "HF_TOKEN": "",
            "MINARI_DATASETS_PATH": str(root / "minari"), "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    return Sandbox(home, cwd, env)


def _expected_code(comment: str) -> int:
    found = re.search(r"\bexits (\d+)", comment)
    return int(found.group(1)) if found else 0


def _is_human_play(text: str) -> bool:
    words = text.split()
    return text.startswith("make play") or (words[:1] == ["gymrec-play"] and "--headless" not in words and "--list" not in words)


def _run_in_window(sandbox: Sandbox, text: str) -> subprocess.CompletedProcess[str]:
    """Human play in a real Xvfb window, quit with Esc at the start gate."""
    missing = [tool for tool in ("Xvfb", "xdotool") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"human play needs {', '.join(missing)} (Debian: xvfb, xdotool)")
    with xvfb() as display:
        env = {k: v for k, v in sandbox.env.items() if k != "SDL_VIDEODRIVER"} | {"DISPLAY": display}
        player = subprocess.Popen(["bash", "-c", text], cwd=sandbox.cwd, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while player.poll() is None and time.monotonic() < deadline:
                found = subprocess.run(["xdotool", "search", "--class", "gymrec"], env=env, capture_output=True, text=True)
                if found.stdout.split():
                    time.sleep(0.5)
                    subprocess.run(["xdotool", "key", "--window", found.stdout.split()[-1], "Escape"], env=env, check=False)
                    break
                time.sleep(0.2)
            out, err = player.communicate(timeout=60)
        finally:
            stop(player)
        return subprocess.CompletedProcess(text, player.returncode, out, err)


def test_the_readme_has_commands_of_every_kind() -> None:
    texts = [c.text for c in COMMANDS]
    for tool in ("gymrec-replay", "gymrec-export minari", "gymrec-export video", "make play"):
        assert any(t.startswith(tool) for t in texts), f"no {tool} command in README.md (or the test no longer finds it)"


@pytest.fixture(scope="module")
def sandboxes() -> dict[int, Sandbox]:
    """Block index -> the sandbox of its first command (for a python block after it)."""
    return {}


@pytest.mark.parametrize("command", COMMANDS, ids=[c.id for c in COMMANDS])
def test_readme_command(command: Command, world: World, sandboxes: dict[int, Sandbox], tmp_path: Path) -> None:
    if command.text.startswith(NEVER_RUN) or re.search(r"\bnot run\b", command.comment):
        pytest.skip("not run by this test (see the module docstring)")
    if command.language == "python":
        before = [c for c in COMMANDS if c.block == command.block - 1 and c.language != "python"]
        sandbox = sandboxes.get(command.block - 1) if before else _sandbox(world, tmp_path)
        if sandbox is None:
            pytest.skip("the sh block before this python block did not run")
        proc = subprocess.run([sys.executable, "-c", command.text], cwd=sandbox.cwd, env=sandbox.env,
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"README line {command.line}: python block failed:\n{proc.stderr[-3000:]}"
        return
    sandbox = _sandbox(world, tmp_path)
    sandboxes.setdefault(command.block, sandbox)
    text = command.text
    for placeholder in EPISODE_PLACEHOLDERS:
        text = re.sub(rf"(?<![\w/]){placeholder}(?![\w/])", world.prefix, text)
    if _is_human_play(text):
        proc = _run_in_window(sandbox, text)
    else:
        proc = subprocess.run(["bash", "-c", text], cwd=sandbox.cwd, env=sandbox.env, capture_output=True, text=True,
                              timeout=600)
    expected = _expected_code(command.comment)
    assert proc.returncode == expected, (
        f"README line {command.line}: `{command.text}` exited {proc.returncode}, expected {expected}\n"
        f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}")
    assert "Traceback" not in proc.stderr, proc.stderr
