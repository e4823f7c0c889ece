"""Quality fields count recorded steps only, a branch counts its own play, and the card sums them right.

The scripted clock says every tick is 20 ms late, so every tick the old accounting saw (the start
gate, paused and help frames, rewind frames, the summary) became a late frame: 518 late frames in a
393-step episode. Now a late frame is a recorded step whose frame period ended late, so here
``late_frames`` is exactly the number of steps played in the episode.
"""

from __future__ import annotations

import json
from pathlib import Path

import pygame
from uploader_helpers import clean_env, run_uploader

from gymrec.replay.verify import VerifyOptions, verify
from gymrec.shared.dataset import layout
from gymrec.shared.spool.sources import SpoolSource
from tests.test_play_human import DOWN, UP, play, tap

ENV = "BreakoutNoFrameskip-v4"


def test_pause_rewind_and_branch_count_only_played_steps(spool: Path, tmp_path: Path) -> None:
    script = {
        0: tap(pygame.K_n), 1: [(DOWN, pygame.K_RIGHT)],
        4: tap(pygame.K_p),  # pause: several dimmed frames ...
        9: tap(pygame.K_p),  # ... resume
        16: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_r)],  # hold R: back a few frames ...
        19: [(UP, pygame.K_r)],  # ... and play on from there: a branch
        22: [(DOWN, pygame.K_ESCAPE)],
    }
    parent, branch = play(ENV, script, spool, late=0.02)
    assert parent.end_reason == "branched" and branch.attrs.parent_episode_id == parent.attrs.episode_id
    played = branch.length - (branch.attrs.branch_step or 0)
    assert played >= 1 and branch.attrs.branch_step and branch.attrs.branch_step > 0

    # Every recorded step was late, nothing else was counted: late_frames is the steps played.
    assert parent.attrs.late_frames == parent.length
    assert parent.attrs.worst_late_ms == 20.0 and parent.attrs.paused_s and parent.attrs.paused_s > 0
    # The branch's figures are its own: the copied prefix is not play, and the parent's pause is not its.
    assert branch.attrs.late_frames == played
    assert branch.attrs.paused_s == 0.0 and branch.attrs.active_fraction == 0.0  # it played on with no key
    assert branch.attrs.longest_idle_s == round(played / 1000.0, 3)
    log = branch.input_log()
    assert log is not None and all(t >= 0 for t in log["t_ns"])

    # Both replay identical, and the card's totals are the sum of the two episodes' own figures.
    for episode in (parent, branch):
        assert verify(SpoolSource(episode.path), VerifyOptions(diff_dir=tmp_path)).status == "identical"
    dataset = tmp_path / "dataset"
    done = run_uploader(["--spool", str(spool), "--once", "--local-dir", str(dataset), "--workers", "1"],
                        tmp_path, clean_env(HOME=str(tmp_path)))
    assert done.returncode == 0, done.stderr
    info = json.loads((dataset / "meta" / "info.json").read_text())
    quality = info["configs"][layout.env_slug(ENV)]["quality"]
    total = parent.length + played
    assert quality["late_frames_sum"] == total and quality["rated_episodes"] == 2
    card = (dataset / "README.md").read_text()
    assert f"{total} late frames" in card
    assert "observation t was on screen" in card and "lagged" not in card.split("## Timing")[0]
