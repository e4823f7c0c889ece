"""R5's catalogue for ``gymrec-play`` and ``gymrec-replay``: bad inputs and damaged spools, one case each.

Every case is one CLI run in its own directory (``CaseDir``), staged from copies of the same few
episodes so no case records its own. What each must show: one stderr line naming the problem and its
fix, the exit code, no pre-existing file changed or deleted (unless the case is meant to move it
aside), and the other episodes still usable. Issue 13's reproductions are here, by its numbers.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gymrec.shared.errors import AgentFailedError, ChunkCorruptError, GymrecError
from gymrec.shared.spool import schema
from gymrec.shared.spool.checksums import resign
from gymrec.shared.spool.directory import SET_ASIDE_AREA, partial_episodes, sealed_episodes, write_owners
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.spaces import action_leaves
from tests.conftest import BIN, run_cli
from tests.recording import chunk_path
from tests.reliability_helpers import make_orphan, read_journal
from tests.replay_helpers import copy_episode, flip_a_decodable_bit, record_episode, redigest, rewrite_rows


class Unavailable(Exception):
    """This machine cannot stage the case (e.g. no tmpfs mount): skipped, with the reason."""


@dataclass
class CaseDir:
    root: Path  # everything under it that exists before the command runs must survive unchanged
    spool: Path
    base: Path  # a sealed 150-step Breakout episode in ``spool``: the "other episode" that must stay usable
    cwd: Path
    other: Path  # another sealed 150-step Breakout episode (seed 2), outside ``root``: copy from it
    orphan: Path  # a 150-step orphan (128 steps committed, 22 only journaled), outside ``root``
    mounts: list[Path] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def mount_tmpfs(self, name: str, size: str) -> Path:
        point = self.root / name
        point.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'})")
        self.mounts.append(point)
        return point

    def remount_read_only(self, point: Path) -> None:
        done = subprocess.run(["mount", "-o", "remount,ro", str(point)], capture_output=True, text=True)
        if done.returncode != 0:
            raise Unavailable(f"cannot remount a tmpfs read-only ({done.stderr.strip()})")

    def copy_orphan(self) -> Path:
        return Path(shutil.copytree(self.orphan, self.spool / self.orphan.name))

    def clean_up(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            proc.wait()
        for point in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(point)], check=False, capture_output=True)


Check = Callable[[CaseDir, subprocess.CompletedProcess[str], str], list[str]]


@dataclass(frozen=True)
class BadInput:
    name: str
    tool: str  # a gymrec command, or "unshare": args[0] is a shell script run in a private mount namespace
    args: tuple[str, ...]  # "{spool}", "{target}" (what ``prepare`` returned), "{cwd}", "{root}", "{bin}" are filled in
    needles: tuple[str, ...] = ()
    prepare: Callable[[CaseDir], str] = lambda case: ""
    # "error": one stderr line with the needles, a non-zero exit. "recovered": the run succeeds and
    # seals what survived (``steps`` of them). "works": the run succeeds despite the bad thing in
    # the spool, saying so once (each needle exactly once in stderr). "diverged": replay exits 1
    # with the needles in its report (stdout).
    expect: str = "error"
    code: int | None = None  # the exact exit status, where the product promises one
    steps: int | None = None  # "recovered": the length of the episode sealed from ``{target}``
    identical: int | None = None  # replays the run must call identical (the other episodes still replay)
    moves: tuple[str, ...] = ()  # paths under root (filled in) the case is meant to move or change
    env: tuple[tuple[str, str], ...] = ()
    check: Check | None = None  # what else must hold
    display: bool = False  # human play: refused without a visible display, so it runs under Xvfb
    known_bug: str = ""  # a product bug another helper fixes: reported as xfail while it reproduces


def fill(text: str, case: CaseDir, target: str) -> str:
    return (text.replace("{spool}", str(case.spool)).replace("{target}", target).replace("{cwd}", str(case.cwd))
            .replace("{root}", str(case.root)).replace("{bin}", str(BIN)))


def still_usable(episode: Path, steps: int = 150) -> list[str]:
    """Whether a sealed episode still opens and reads whole, every chunk passing its checksum."""
    try:
        opened = Episode(episode)
        if opened.length != steps:
            return [f"{episode.name} now has {opened.length} steps, not {steps}"]
        opened.batch(0, steps)
    except (GymrecError, OSError) as e:
        return [f"{episode.name} is no longer usable: {e}"]
    return []


# --- staging -----------------------------------------------------------------------------------------


def _keymap(text: str) -> Callable[[CaseDir], str]:
    def make(case: CaseDir) -> str:
        path = case.root / "keymap.toml"
        path.write_text(text)
        return str(path)

    return make


def _spool_file(case: CaseDir) -> str:
    path = case.root / "spool-file"
    path.write_text("keep me")
    return str(path)


def _unwritable(case: CaseDir) -> str:
    if os.geteuid() != 0:
        path = case.root / "locked"
        shutil.copytree(case.spool, path)
        path.chmod(0o500)
        return str(path)
    # root writes through any mode bits: only a read-only filesystem makes a spool unwritable
    point = case.mount_tmpfs("ro", "2m")
    shutil.copytree(case.base, point / case.base.name)
    case.remount_read_only(point)
    return str(point)


def _read_only_with_orphan(case: CaseDir) -> str:
    """Issue 13.11: a read-only mount holding a sealed episode and an orphan it cannot lock."""
    if os.geteuid() != 0:
        raise Unavailable("only root can mount the read-only tmpfs this case needs")
    point = case.mount_tmpfs("ro", "8m")
    shutil.copytree(case.base, point / case.base.name)
    shutil.copytree(case.orphan, point / case.orphan.name)
    case.remount_read_only(point)
    return str(point)


def _tiny_disk(case: CaseDir) -> str:
    spool = case.mount_tmpfs("tiny", "600k") / "spool"
    spool.mkdir()
    shutil.copytree(case.base, spool / case.base.name)
    return str(spool)


def _copy_with(edit: Callable[[CaseDir, Path], None]) -> Callable[[CaseDir], str]:
    def make(case: CaseDir) -> str:
        copy = copy_episode(case.base, case.spool)
        edit(case, copy)
        return str(copy)

    return make


def _edit_attrs(change: Callable[[dict[str, Any]], None]) -> Callable[[CaseDir, Path], None]:
    def edit(case: CaseDir, episode: Path) -> None:
        meta = json.loads((episode / schema.METADATA_NAME).read_text())
        change(meta["attributes"])
        meta["attributes"] = resign(meta["attributes"])  # so the field, not the checksum, is what is wrong
        (episode / schema.METADATA_NAME).write_text(json.dumps(meta))

    return edit


def _garbage_chunk(array: str) -> Callable[[CaseDir, Path], None]:
    def edit(case: CaseDir, episode: Path) -> None:
        chunk_path(episode, array, 1).write_bytes(b"garbage bytes, not a zstd frame")

    return edit


def _flip_where_zstd_still_decodes(case: CaseDir, episode: Path) -> None:
    flip_a_decodable_bit(chunk_path(episode, "obs/frame", 1))


def _foreign_chunk(case: CaseDir, episode: Path) -> None:
    """Issue 13.2: a frame chunk of another episode: a valid chunk with a valid crc32c, wrong frames."""
    shutil.copyfile(chunk_path(case.other, "obs/frame", 1), chunk_path(episode, "obs/frame", 1))


def _diverging(case: CaseDir, episode: Path) -> None:
    rewrite_rows(episode, schema.REWARD, 10, 5.0)  # the env pays 0.0 there


def _foreign_timestamp_chunk(case: CaseDir, episode: Path) -> None:
    """A per-step chunk of another episode: intact, crc32c valid; only the chunk digest tells. (Not
    reward: random Breakout's reward chunks are often all zeros in both, so byte-identical.)"""
    other, mine = chunk_path(case.other, schema.TIMESTAMP, 1), chunk_path(episode, schema.TIMESTAMP, 1)
    assert other.read_bytes() != mine.read_bytes(), "the two episodes' timestamp chunks are alike: nothing staged"
    shutil.copyfile(other, mine)


def _foreign_chunk_resigned(case: CaseDir, episode: Path) -> None:
    """The foreign frame chunk with the chunk digests brought up to date (as a deliberate edit would):
    only the frame hashes still tell, which --check-frames compares."""
    _foreign_chunk(case, episode)
    redigest(episode)


def _foreign_chunk_with_a_file_in_the_way(case: CaseDir) -> str:
    _spool_file(case)  # --diff-dir points inside this file: no image can be written
    return _copy_with(_foreign_chunk_resigned)(case)


def _empty_episode(case: CaseDir) -> str:
    return str(record_episode(case.spool, "BreakoutNoFrameskip-v4", 0, 3))


def _two_alike(case: CaseDir) -> str:
    for n in (1, 2):
        copy_episode(case.base, case.spool, f"abcd0000-0000-4000-8000-00000000000{n}")
    return ""


def _torn_journal(case: CaseDir) -> str:
    """An orphan of 100 steps (64 committed) whose journal is cut inside record 81."""
    partial = make_orphan(case.spool, "BreakoutNoFrameskip-v4", 100, 8)
    journal = partial / schema.JOURNAL_NAME
    journaled = read_journal(partial)
    assert journaled is not None and journaled.steps == 100
    attrs = json.loads((partial / schema.METADATA_NAME).read_text())["attributes"]
    record_size = schema.JournalFormat(tuple(action_leaves(attrs["action_space"]))).record_size
    os.truncate(journal, 80 * record_size + record_size // 2)
    return partial.stem


def _renamed_to_partial(case: CaseDir) -> str:
    """Issue 13.1: a sealed episode renamed back to .partial by hand (or by a sync tool)."""
    copy = copy_episode(case.base, case.spool)
    copy.rename(case.spool / schema.partial_name(copy.stem))
    return copy.stem


def _orphan_with(edit: Callable[[Path], None]) -> Callable[[CaseDir], str]:
    def make(case: CaseDir) -> str:
        partial = case.copy_orphan()
        edit(partial)
        return partial.stem

    return make


def _claims_10000(partial: Path) -> None:
    (partial / schema.COMMITTED_NAME).write_text(json.dumps({"steps": 10_000}))


def _zero_length_chunk(partial: Path) -> None:
    chunk_path(partial, "obs/frame", 1).write_bytes(b"")


def _flipped_reward_chunk(partial: Path) -> None:
    chunk = chunk_path(partial, schema.REWARD, 0)
    data = bytearray(chunk.read_bytes())
    data[3] ^= 0x10
    chunk.write_bytes(bytes(data))


def _stopped_writer(case: CaseDir) -> str:
    """Issue 13.6: an orphan whose writer process still exists, stopped (SIGSTOP)."""
    partial = case.copy_orphan()
    writer = subprocess.Popen(["sleep", "600"])
    case.procs.append(writer)
    writer.send_signal(signal.SIGSTOP)
    write_owners(partial, [writer.pid])
    return partial.stem


def _alien_partial(case: CaseDir) -> str:
    (case.spool / "backup.partial").mkdir()  # issue 13.4: not ours
    return "backup.partial"


def _unreadable_partial(case: CaseDir) -> str:
    """Issue 13.4: a .partial of ours whose zarr.json is '{' (what deleting a spool mid-recording leaves)."""
    partial = case.spool / schema.partial_name("11111111-2222-4333-8444-555555555555")
    partial.mkdir()
    (partial / schema.METADATA_NAME).write_text("{")
    return partial.stem


def _roms_missing(case: CaseDir, episode: Path) -> None:
    _edit_attrs(lambda a: a.update(env_id="SonicTheHedgehog-Genesis-v0", backend="retro"))(case, episode)


def _drifted_versions(case: CaseDir, episode: Path) -> None:
    _diverging(case, episode)
    _edit_attrs(lambda a: a["versions"].update({"ale-py": "0.0.1"}))(case, episode)


BAD_AGENTS = '''
def _after(n, bad):
    state = {"steps": 0}
    def act(obs):  # the good steps move the paddle and fire, so the frames change (issue 19.2)
        state["steps"] += 1
        return bad if state["steps"] > n else state["steps"] % 4
    return act

minus_one = _after(70, -1)
ninety_nine = _after(70, 99)
one_point_o = _after(5, 1.0)
huge = _after(5, 2**70)

def raises(obs, _state={"steps": 0}):
    _state["steps"] += 1
    if _state["steps"] > 30:
        raise ZeroDivisionError("the policy divided by zero")
    return 1
'''


def _bad_agents(case: CaseDir) -> str:
    (case.cwd / "bad_agents.py").write_text(BAD_AGENTS)
    return ""


def _long_name(case: CaseDir) -> str:
    return str(case.root / ("x" * 300))


# --- checks ------------------------------------------------------------------------------------------


def _replays_identical(case: CaseDir, episode: Path) -> list[str]:
    """What gymrec-replay says of an episode the run sealed, unless it is ``identical`` (issue 19.3)."""
    done = run_cli("gymrec-replay", str(episode), "--diff-dir", str(case.cwd / "diffs"), cwd=case.cwd, timeout=300)
    return [] if done.returncode == 0 and "identical" in done.stdout else [
        f"the sealed {episode.name} does not replay identical: {done.stdout.strip()} {done.stderr.strip()}"]


def _sealed_good_steps(steps: int) -> Check:
    """A bad agent's session seals the good steps before it, leaves nothing for recovery, and what it
    sealed replays identical (its final observation is the env's after the last good step)."""

    def check(case: CaseDir, proc: subprocess.CompletedProcess[str], target: str) -> list[str]:
        new = [p for p in sealed_episodes(case.spool) if p != case.base]
        if partial_episodes(case.spool):
            return ["a .partial was left for recovery"]
        if len(new) != 1 or Episode(new[0]).length != steps:
            return [f"not one episode of {steps} good steps sealed: {[(p.name, Episode(p).length) for p in new]}"]
        return _replays_identical(case, new[0])

    return check


def _same_chunks_as_base(case: CaseDir, proc: subprocess.CompletedProcess[str], target: str) -> list[str]:
    def chunks(root: Path) -> set[str]:
        return {str(p.relative_to(root)) for p in root.rglob("c.*") if p.is_file()}

    recovered = case.spool / schema.sealed_name(target)
    return [] if chunks(recovered) == chunks(case.base) else ["recovery deleted chunks of the renamed episode"]


def _left_alone(case: CaseDir, proc: subprocess.CompletedProcess[str], target: str) -> list[str]:
    return [] if (case.spool / target).is_dir() else [f"{target} was moved or deleted"]


def _left_alone_and_recorded(case: CaseDir, proc: subprocess.CompletedProcess[str], target: str) -> list[str]:
    recorded = [p for p in sealed_episodes(case.spool) if p != case.base]
    return _left_alone(case, proc, target) + [p for e in recorded for p in _replays_identical(case, e)]


def _orphan_untouched(case: CaseDir, proc: subprocess.CompletedProcess[str], target: str) -> list[str]:
    partial = case.spool / schema.partial_name(target)
    return [] if partial.is_dir() and "recovered" not in proc.stderr else ["a stopped writer's episode was recovered"]


def _set_aside_whole(case: CaseDir, proc: subprocess.CompletedProcess[str], target: str) -> list[str]:
    moved = case.spool / SET_ASIDE_AREA / schema.partial_name(target)
    reason = moved.with_name(moved.name + ".reason.txt")
    ok = (moved / schema.METADATA_NAME).read_text() == "{" and schema.METADATA_NAME in reason.read_text()
    return [] if ok else ["the unreadable .partial was not set aside whole, with its reason"]


def _not_in_output(*needles: str) -> Check:
    def check(case: CaseDir, proc: subprocess.CompletedProcess[str], target: str) -> list[str]:
        return [f"{n!r} in the output" for n in needles if n in proc.stdout + proc.stderr]

    return check


def _small_shm_recorded(case: CaseDir, proc: subprocess.CompletedProcess[str], target: str) -> list[str]:
    new = [p for p in sealed_episodes(case.spool) if p != case.base]
    problems = [] if len(new) == 1 and Episode(new[0]).length == 300 else [f"not one 300-step episode: {new}"]
    if list((case.root / "tmp").glob("gymrec_*")):
        problems.append("spilled chunk buffers were left behind")
    return problems or _replays_identical(case, new[0])


def _tmpdir(case: CaseDir) -> str:
    (case.root / "tmp").mkdir()
    return ""


# --- the catalogue -----------------------------------------------------------------------------------

PLAY = ("--agent", "random", "--headless", "--spool", "{spool}")
ALL = ("--spool", "{spool}", "--all")
CORRUPT = ChunkCorruptError.exit_code
AGENT = ("ALE/Breakout-v5", "--headless", "--seed", "1", "--spool", "{spool}")
AGENT_ENV = (("PYTHONPATH", "{cwd}"),)
SHM_SCRIPT = ("mount -t tmpfs -o size=8m tmpfs /dev/shm && {bin}/gymrec-play BreakoutNoFrameskip-v4 --agent random "
              "--headless --max-steps 300 --seed 7 --spool {spool}")


def _flag(flag: str, value: str) -> BadInput:
    return BadInput(f"play: {flag} {value}", "gymrec-play", ("ALE/Pong-v5", *PLAY, flag, value), (flag,))


def _agent(name: str, steps: int, value: str) -> BadInput:
    return BadInput(f"play: agent returns {value} for Discrete(4)", "gymrec-play", (*AGENT, "--agent", f"bad_agents:{name}"),
                    (f"bad_agents:{name}", f"step {steps}", value, "Discrete(4)"), _bad_agents,
                    code=AgentFailedError.exit_code, env=AGENT_ENV, check=_sealed_good_steps(steps))


R5_CASES = (
    BadInput("unknown env", "gymrec-play", ("Breakout-v9", *PLAY), ("unknown env id", "did you mean")),
    BadInput("ROM-less retro game", "gymrec-play", ("SuperMarioBros-Nes-v0", *PLAY), ("no ROM",)),
    BadInput("malformed --env-kwarg", "gymrec-play", ("ALE/Pong-v5", *PLAY, "--env-kwarg", "frameskip"), ("KEY=VALUE",)),
    BadInput("unknown --env-kwarg", "gymrec-play", ("ALE/Pong-v5", *PLAY, "--env-kwarg", "bogus=1"), ("bogus",)),
    # issue 21.4: never recorded into a dead end the uploader could never publish
    BadInput("--env-kwarg obs_type=ram", "gymrec-play", ("ALE/Pong-v5", *PLAY, "--env-kwarg", "obs_type=ram"),
             ("not an 8-bit image", "obs_type=ram")),
    BadInput("keymap: unknown key", "gymrec-play", ("ALE/Pong-v5", "--spool", "{spool}", "--keymap", "{target}"),
             ("unknown key 'foo'",), _keymap("[bindings]\nfoo = 'UP'\n"), display=True),
    BadInput("keymap: unknown ALE action", "gymrec-play", ("ALE/Pong-v5", "--spool", "{spool}", "--keymap", "{target}"),
             ("unknown Atari action 'JUMP'",), _keymap("[bindings]\nup = 'JUMP'\n"), display=True),
    BadInput("keymap: unknown VizDoom button", "gymrec-play",
             ("VizdoomBasic-v1", "--spool", "{spool}", "--keymap", "{target}"),
             ("unknown VizDoom button 'WALK'",), _keymap("[bindings]\nup = 'WALK'\n"), display=True),
    BadInput("keymap: missing file", "gymrec-play", ("ALE/Pong-v5", "--spool", "{spool}", "--keymap", "nope.toml"),
             ("does not exist",)),
    BadInput("unknown agent", "gymrec-play", ("ALE/Pong-v5", "--agent", "randum", "--headless", "--spool", "{spool}"),
             ("MODULE:CALLABLE",)),
    BadInput("headless human", "gymrec-play", ("ALE/Pong-v5", "--headless", "--spool", "{spool}"), ("needs an agent",)),
    BadInput("play: spool is a file", "gymrec-play", ("ALE/Pong-v5", "--agent", "random", "--headless", "--spool", "{target}"),
             ("is a file",), _spool_file),
    BadInput("play: spool unwritable", "gymrec-play", ("ALE/Pong-v5", "--agent", "random", "--headless", "--spool", "{target}"),
             ("not writable",), _unwritable),
    BadInput("play: full disk", "gymrec-play",
             ("PongNoFrameskip-v4", "--agent", "random", "--headless", "--seed", "3", "--spool", "{target}"),
             ("disk", "full"), _tiny_disk),
    BadInput("play: a spool name of 300 characters (13.11)", "gymrec-play",
             ("ALE/Pong-v5", "--agent", "random", "--headless", "--spool", "{target}"), ("too long", "--spool"), _long_name),
    BadInput("play: no ENV_ID", "gymrec-play", ("--spool", "{spool}"), ("ENV_ID",)),
    BadInput("play: --seed out of range", "gymrec-play", ("ALE/Pong-v5", *PLAY, "--seed", "-5"), ("--seed",)),
    # issue 13.3: numeric flags reject nan, inf and absurd values
    _flag("--fps", "nan"), _flag("--fps", "inf"), _flag("--fps", "1e-300"), _flag("--scale", "0"), _flag("--scale", "nan"),
    _flag("--scale", "1e9"), _flag("--max-steps", "nan"), _flag("--episodes", "0"),
    _flag("--env-kwarg", "repeat_action_probability=NaN"),
    # issue 13.3: impossible actions end the session with one line and seal the good steps
    _agent("minus_one", 70, "-1"), _agent("ninety_nine", 70, "99"), _agent("one_point_o", 5, "1.0"),
    _agent("huge", 5, str(2**70)),
    BadInput("play: the agent raises", "gymrec-play", (*AGENT, "--agent", "bad_agents:raises"),
             ("agent bad_agents:raises raised ZeroDivisionError", "divided by zero", "step 30"), _bad_agents,
             code=AgentFailedError.exit_code, env=AGENT_ENV, check=_sealed_good_steps(30)),
    # issue 13.7: a small /dev/shm spills chunk buffers to files, says so once, records everything
    BadInput("play: 8 MB of /dev/shm", "unshare", (SHM_SCRIPT,), ("buffering in files",), _tmpdir, expect="works",
             env=(("TMPDIR", "{root}/tmp"),), check=_small_shm_recorded),
    # issue 13.4: nothing in a spool blocks the commands from the rest of it
    BadInput("play: mkdir S/backup.partial", "gymrec-play", ("BreakoutNoFrameskip-v4", *PLAY, "--max-steps", "20"),
             ("backup.partial is not a gymrec episode",), _alien_partial, expect="works", check=_left_alone_and_recorded),
    BadInput("replay: mkdir S/backup.partial", "gymrec-replay", ALL, ("backup.partial is not a gymrec episode",),
             _alien_partial, expect="works", identical=1, check=_left_alone),
    BadInput("replay: a .partial whose zarr.json is '{'", "gymrec-replay", ALL, ("could not recover",),
             _unreadable_partial, expect="works", identical=1, moves=("spool/{target}",), check=_set_aside_whole),
    BadInput("replay: a read-only spool with an orphan (13.11)", "gymrec-replay", ("--spool", "{target}", "--all"),
             ("read-only",), _read_only_with_orphan, expect="works", identical=1),
    # issue 13.6: an orphan whose writer still exists (stopped) is not recovered under it
    BadInput("replay: an orphan whose writer is stopped", "gymrec-replay", ALL, (), _stopped_writer, expect="works",
             identical=1, check=_orphan_untouched),
    # issues 13.1 and 13.5: recovery keeps every step it can prove and strands nothing
    BadInput("replay: a sealed episode renamed to .partial by hand", "gymrec-replay", ALL,
             ("recovered", "150 steps checked, 0 rebuilt"), _renamed_to_partial, expect="recovered", steps=150,
             identical=2, moves=("spool/{target}",), check=_same_chunks_as_base),
    BadInput("replay: an orphan whose committed.json claims 10,000 steps", "gymrec-replay", ALL,
             ("recovered", "128 steps checked, 22 rebuilt"), _orphan_with(_claims_10000), expect="recovered", steps=150,
             identical=2, moves=("spool/{target}",)),
    BadInput("replay: an orphan with a zero-length committed chunk", "gymrec-replay", ALL,
             ("recovered", "64 steps checked, 86 rebuilt"), _orphan_with(_zero_length_chunk), expect="recovered",
             steps=150, identical=2, moves=("spool/{target}",)),
    BadInput("replay: an orphan with a bit-flipped committed chunk", "gymrec-replay", ALL,
             ("recovered", "0 steps checked, 150 rebuilt"), _orphan_with(_flipped_reward_chunk), expect="recovered",
             steps=150, identical=2, moves=("spool/{target}",)),
    BadInput("replay: torn journal in an orphan", "gymrec-replay", ALL, ("recovered", "64 steps checked, 16 rebuilt"),
             _torn_journal, expect="recovered", steps=80, identical=2, moves=("spool/{target}",)),
    # stored data that is wrong on disk: corruption, never "identical" (issue 13.2)
    BadInput("replay: corrupt obs chunk", "gymrec-replay", ("{target}", "--check-frames"), ("chunk 1 of 'obs/frame'", "crc32c"),
             _copy_with(_garbage_chunk("obs/frame")), code=CORRUPT),
    BadInput("replay: corrupt reward chunk", "gymrec-replay", ("{target}",), ("chunk 1 of 'reward'", "crc32c"),
             _copy_with(_garbage_chunk(schema.REWARD)), code=CORRUPT),
    BadInput("replay: a bit flip in a frame chunk that zstd still decodes", "gymrec-replay", ("{target}",),
             ("stored data is corrupt", "chunk 1 of 'obs/frame'", "steps 64..127", "crc32c"),
             _copy_with(_flip_where_zstd_still_decodes), code=CORRUPT),
    BadInput("replay --all: a bit-flipped episode beside a good one", "gymrec-replay", ALL,
             ("stored data is corrupt", "chunk 1 of 'obs/frame'"), _copy_with(_flip_where_zstd_still_decodes),
             identical=1, code=CORRUPT),  # issue 21: the other episodes are replayed, the run exits 5
    BadInput("replay: a frame chunk copied from another episode", "gymrec-replay", ("{target}",),
             ("stored data is corrupt", "'obs/frame'", "not the ones this episode sealed"), _copy_with(_foreign_chunk),
             code=CORRUPT),
    BadInput("replay: a timestamp chunk copied from another episode", "gymrec-replay", ("{target}",),
             ("stored data is corrupt", "'timestamp'", "not the ones this episode sealed"),
             _copy_with(_foreign_timestamp_chunk), code=CORRUPT),
    BadInput("replay --check-frames: a foreign frame chunk, digests re-signed", "gymrec-replay",
             ("{target}", "--check-frames", "--diff-dir", "{cwd}/diffs"),
             ("diverged", "step 64 observation", "does not match its recorded hash"), _copy_with(_foreign_chunk_resigned),
             expect="diverged"),
    BadInput("replay: missing attribute", "gymrec-replay", ("{target}",), ("missing attribute", "seed"),
             _copy_with(_edit_attrs(lambda a: a.pop("seed")))),
    BadInput("replay: wrong schema_version", "gymrec-replay", ("{target}",), ("schema_version 99",),
             _copy_with(_edit_attrs(lambda a: a.update(schema_version=99)))),
    BadInput("replay: no ROM for the recorded env", "gymrec-replay", ("{target}",), ("no ROM",), _copy_with(_roms_missing)),
    BadInput("replay: empty episode", "gymrec-replay", ("{target}",), ("no steps",), _empty_episode),
    # issue 13.11: messages that point the right way
    BadInput("replay: an unwritable --diff-dir does not hide the divergence", "gymrec-replay",
             ("{target}", "--check-frames", "--diff-dir", "{root}/spool-file/diffs"), ("diverged", "step 64 observation"),
             _foreign_chunk_with_a_file_in_the_way, expect="diverged"),
    BadInput("replay: the version-drift hint names no replay option it lacks", "gymrec-replay",
             ("{target}", "--diff-dir", "{cwd}/diffs"), ("ale-py", "recorded with 0.0.1"), _copy_with(_drifted_versions),
             code=1, check=_not_in_output("--env-kwarg")),
    BadInput("replay: a spool name of 300 characters (13.11)", "gymrec-replay", ("--spool", "{target}", "--all"),
             ("too long", "--spool"), _long_name),
    BadInput("replay: --fps nan", "gymrec-replay", ("--spool", "{spool}", "--all", "--render", "--fps", "nan"),
             ("--fps", "not a number")),
    BadInput("replay: id is not a UUID", "gymrec-replay", ("--spool", "{spool}", "not-a-uuid!"),
             ("neither an episode directory nor an episode id",)),
    BadInput("replay: ambiguous prefix", "gymrec-replay", ("--spool", "{spool}", "abcd"), ("matches 2 episodes",), _two_alike),
    BadInput("replay: unknown id", "gymrec-replay", ("--spool", "{spool}", "0123abcd"), ("no episode",)),
    BadInput("replay: spool missing", "gymrec-replay", ("--spool", "{spool}/nope", "--all"), ("does not exist",)),
    BadInput("replay: spool is a file", "gymrec-replay", ("--spool", "{target}", "--all"), ("is a file",), _spool_file),
    BadInput("replay: --no-verify without --render", "gymrec-replay", ("--no-verify", "--spool", "{spool}", "--all"),
             ("--render",)),
)
