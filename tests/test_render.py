"""``gymrec-replay --render``'s viewer, in process under the dummy driver (the CLI refuses it without a display)."""

from __future__ import annotations

from pathlib import Path

import pygame
import pytest

from gymrec.replay.render import fit_scale, show
from gymrec.replay.verify import VerifyOptions
from gymrec.shared.errors import ReplayStoppedError
from gymrec.shared.spool.sources import SpoolSource
from tests.recording import record_episode


@pytest.mark.parametrize(("size", "panels", "desktop", "scale"), [
    ((160, 210), 2, (1280, 800), 2),  # Atari: two panes at 2x
    ((320, 240), 2, (1280, 800), 1),  # VizDoom: 2x would be 1288 px wide on a 1280 px screen
    ((320, 240), 1, (1280, 800), 2),
    ((320, 240), 2, (3840, 2160), 2),  # never beyond ~480 px tall
    ((2000, 2000), 2, (1280, 800), 1),  # at least 1
])
def test_the_window_fits_the_screen(size: tuple[int, int], panels: int, desktop: tuple[int, int], scale: int) -> None:
    assert fit_scale(*size, panels, desktop) == scale


def test_show_verifies_to_the_end_and_labels_the_panes(spool: Path, tmp_path: Path) -> None:
    source = SpoolSource(record_episode(spool, "ALE/Pong-v5", 8, seed=2))
    result = show(source, VerifyOptions(diff_dir=tmp_path), fps=1000.0, verify=True)
    assert result.status == "identical" and result.steps_run == 8


def test_escape_before_the_end_is_its_own_error(spool: Path, tmp_path: Path) -> None:
    source = SpoolSource(record_episode(spool, "ALE/Pong-v5", 30, seed=2))
    pygame.display.init()
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE))
    with pytest.raises(ReplayStoppedError) as info:
        show(source, VerifyOptions(diff_dir=tmp_path), fps=1000.0, verify=True)
    assert info.value.exit_code == 4 and "stopped at step" in str(info.value)
