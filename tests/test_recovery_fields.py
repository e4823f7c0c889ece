"""Recovery keeps every field the recorder knew (issue 21 item 3): a person's session SIGKILLed during
``--takeover`` or inside a branch is recovered with each step's actor (agent, human, copied) and
timing, the takeover flag and the lineage, as sealing would have written them.

Each session runs in a child process (real window on the dummy video driver, scripted key presses)
that SIGKILLs itself at a given frame; the same script with Esc at that frame is the reference the
recorder seals itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr

from gymrec.shared.spool.directory import partial_episodes
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.recovery import recover_orphans
from gymrec.shared.spool.schema import ACTORS

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, signal, sys
from pathlib import Path
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
import pygame
from test_play_human import DOWN, UP, ScriptedClock, tap
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import HumanController, TakeoverController
from gymrec.recorder.session import Session
from gymrec.recorder.window import GameWindow
from gymrec.shared.envs.backends import make_env
from gymrec.shared.keymaps.keymap import build_resolver, load_keymap

spool, mode, end_at, kill = Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5] == "kill"
R, L, T = pygame.K_RIGHT, pygame.K_LEFT, pygame.K_t
if mode == "takeover":  # the agent (FIRE) plays; T: the person (RIGHT held) takes over at 100, gives back at 300
    script = {0: tap(pygame.K_n), 1: [(DOWN, R)], 100: tap(T), 300: tap(T), 500: tap(T)}
else:  # ten steps of RIGHT, rewind to step 7 and play on with LEFT: a branch
    script = {0: tap(pygame.K_n), 1: [(DOWN, R)], 11: [(UP, R), (DOWN, pygame.K_r)], 14: [(UP, pygame.K_r), (DOWN, L)]}


class Clock(ScriptedClock):
    def wait(self, *args, **kwargs):
        if self.waits == end_at:
            if kill:
                os.kill(os.getpid(), signal.SIGKILL)
            self.script[self.waits] = [(DOWN, pygame.K_ESCAPE)]
        return super().wait(*args, **kwargs)


env_id = "BreakoutNoFrameskip-v4"
made = make_env(env_id, {})
takeover = mode == "takeover"
agent = "tests:always_fire" if takeover else "human"
config = PlayConfig(env_id=env_id, spool=spool, seed=5, fps=1000.0, player="tester", agent=agent, takeover=takeover)
keymap = load_keymap(made.backend)
resolver = build_resolver(keymap, made.env)
window = GameWindow(title="test", fps=1000.0, scale=1, help_lines=[], clock=Clock(script))
window.open((210, 160, 3))
pygame.event.clear()
stored = {"source": keymap.source}
source = (TakeoverController(window, resolver, stored, lambda _obs: 1, agent) if takeover
          else HumanController(window, resolver, stored))
try:
    Session(config, made, source).run()
finally:
    source.close()
    made.env.close()
"""


def _session(spool: Path, mode: str, end_at: int, kill: bool) -> None:
    spool.mkdir()
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy"}
    done = subprocess.run([sys.executable, "-c", CHILD, str(REPO), str(spool), mode, str(end_at), "kill" if kill else "seal"],
                          env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
    assert (done.returncode == -9) if kill else (done.returncode == 0), done.stderr[-3000:]


def _recovered(spool: Path) -> Episode:
    deadline = time.monotonic() + 30
    while partial_episodes(spool) and time.monotonic() < deadline:  # the dead recorder's writer drains first
        recover_orphans(spool)
        time.sleep(0.05)
    sealed = sorted(spool.glob("*.zarr"), key=lambda p: p.stat().st_mtime)
    return Episode(sealed[-1])


def _steps(episode: Episode) -> dict[str, np.ndarray]:
    group = zarr.open_group(str(episode.path), mode="r")
    return {name: np.asarray(group[name][:]) for name in ("actor", "shown_ns", "decided_ns")}


@pytest.mark.parametrize(("mode", "end_at"), [("takeover", 700), ("branch", 400)])
def test_a_sigkilled_takeover_or_branch_is_recovered_field_for_field(mode: str, end_at: int, tmp_path: Path) -> None:
    killed, sealed = tmp_path / "killed", tmp_path / "sealed"
    _session(killed, mode, end_at, kill=True)
    _session(sealed, mode, end_at, kill=False)
    got = _recovered(killed)
    want = Episode(max(sealed.glob("*.zarr"), key=lambda p: p.stat().st_mtime))
    assert got.attrs.end_reason == "recovered" and want.attrs.end_reason == "quit"
    n = min(got.length, want.length)
    assert n > 100 and abs(got.length - want.length) <= 1
    for field in ("takeover", "branch_step", "collector", "seed", "pairing"):
        assert getattr(got.attrs, field) == getattr(want.attrs, field), field
    assert (got.attrs.parent_episode_id is None) == (want.attrs.parent_episode_id is None)  # ids differ run to run
    if mode == "branch":
        parents = {Episode(p).attrs.episode_id: Episode(p) for p in killed.glob("*.zarr")}
        assert parents[got.attrs.parent_episode_id].attrs.branched_at == want.attrs.branch_step == 7
    else:
        assert got.attrs.takeover is True
    assert got.actions()[:n] == want.actions()[:n]
    mine, theirs = _steps(got), _steps(want)
    assert [ACTORS[a] for a in mine["actor"][:n]] == [ACTORS[a] for a in theirs["actor"][:n]]
    assert len(set(mine["actor"][:n].tolist())) == 2  # agent and human, or copied and human
    for name in ("shown_ns", "decided_ns"):  # real clocks differ run to run; recovery keeps them, never zeroes
        copied = mine["actor"] == ACTORS.index("copied")
        assert np.all(mine[name][~copied] > 0), name
