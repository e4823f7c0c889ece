"""Rewind in ``--takeover``: the person rewinds while in control; while the agent plays, R is refused
with a notice on the status bar and the agent plays on."""

from __future__ import annotations

from pathlib import Path

import pygame
import zarr

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import REWIND_REFUSED, TakeoverController
from gymrec.recorder.session import Session
from gymrec.recorder.window import GameWindow
from gymrec.replay.verify import VerifyOptions, verify
from gymrec.shared.envs.backends import make_env
from gymrec.shared.keymaps.keymap import build_resolver, load_keymap
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.schema import ACTORS
from gymrec.shared.spool.sources import SpoolSource
from tests.test_play_human import DOWN, UP, Script, ScriptedClock, tap

ENV = "BreakoutNoFrameskip-v4"


def _takeover(spool: Path, script: Script) -> tuple[list[Episode], TakeoverController, list[str]]:
    made = make_env(ENV, {})
    config = PlayConfig(env_id=ENV, spool=spool, seed=4, fps=1000.0, player="tester", agent="tests:always_fire",
                        takeover=True)
    keymap = load_keymap(made.backend)
    resolver = build_resolver(keymap, made.env)
    window = GameWindow(title="test", fps=1000.0, scale=1, help_lines=[], clock=ScriptedClock(script))
    window.open((210, 160, 3))
    pygame.event.clear()
    source = TakeoverController(window, resolver, {"source": keymap.source}, lambda _obs: 1, "tests:always_fire")
    notices: list[str] = []
    draw = window._bar.draw if window._bar is not None else None
    assert draw is not None

    def spy(screen: pygame.Surface, top: int, hud, *rest) -> None:  # type: ignore[no-untyped-def]
        if hud.notice:
            notices.append(hud.notice)
        draw(screen, top, hud, *rest)

    window._bar.draw = spy  # type: ignore[method-assign,union-attr]
    try:
        episodes = [Episode(p) for p in Session(config, made, source).run().sealed]
    finally:
        source.close()
        made.env.close()
    return episodes, source, notices


def test_rewind_while_the_agent_plays_is_refused_with_a_notice(spool: Path, tmp_path: Path) -> None:
    script: Script = {0: tap(pygame.K_n), 4: [(DOWN, pygame.K_r)], 8: [(UP, pygame.K_r)], 10: [(DOWN, pygame.K_ESCAPE)]}
    (episode,), _, notices = _takeover(spool, script)
    assert episode.end_reason == "quit" and episode.attrs.branched_at is None
    actors = zarr.open_group(str(episode.path), mode="r")["actor"][:]
    assert {ACTORS[a] for a in actors} == {"agent"}  # the agent played every step, R or not
    assert REWIND_REFUSED in notices
    assert verify(SpoolSource(episode.path), VerifyOptions(diff_dir=tmp_path)).status == "identical"


def test_rewind_while_the_person_has_control_branches(spool: Path, tmp_path: Path) -> None:
    script: Script = {
        0: tap(pygame.K_n), 3: tap(pygame.K_t),  # the agent plays 2 steps, then the person takes over
        4: [(DOWN, pygame.K_RIGHT)],
        9: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_r)],  # hold R: back a few frames ...
        12: [(UP, pygame.K_r)],  # ... play on from there
        14: [(DOWN, pygame.K_ESCAPE)],
    }
    (parent, branch), _, notices = _takeover(spool, script)
    assert parent.end_reason == "branched" and branch.attrs.parent_episode_id == parent.attrs.episode_id
    assert parent.attrs.takeover is True and branch.attrs.takeover is True and not notices
    actors = [ACTORS[a] for a in zarr.open_group(str(branch.path), mode="r")["actor"][:]]
    step = branch.attrs.branch_step or 0
    assert step > 0 and actors[:step] == ["copied"] * step and set(actors[step:]) == {"human"}
    for episode in (parent, branch):
        assert verify(SpoolSource(episode.path), VerifyOptions(diff_dir=tmp_path)).status == "identical"
