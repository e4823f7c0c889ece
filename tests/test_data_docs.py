"""Every python block of docs/training.md runs, as a reader would run it, against a home holding a
local dataset and a spool, with the suite's Hub serving the dataset as ``you/gymrec-<config>``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.data_helpers import CONFIG, DataWorld, seed_hub

DOC = REPO / "docs" / "training.md"
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
BLOCKS = BLOCK.findall(DOC.read_text())


def test_the_doc_has_its_examples() -> None:
    assert len(BLOCKS) == 4 and sum("import torch" in b for b in BLOCKS) == 1


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_a_training_example_runs(number: int, data_world: DataWorld, hub: object, tmp_path: Path) -> None:
    home = tmp_path / "home"
    share = home / ".local" / "share" / "gymrec"
    share.mkdir(parents=True)
    (share / "dataset").symlink_to(data_world.dataset)
    (share / "spool").symlink_to(data_world.spool)
    seed_hub(hub, data_world, f"you/gymrec-{CONFIG}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GYMREC_"))}
    env |= {"HOME": str(home), "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": hub.endpoint,  # type: ignore[attr-defined]
            "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
            "OMP_NUM_THREADS": "1"}  # fmt: skip  (one torch thread: the suite shares the cores)
    done = subprocess.run([sys.executable, "-c", BLOCKS[number]], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=240)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "every example prints what it did"
    if number == 0:
        assert "windows of 16 steps from 2 episodes" in done.stdout and "epoch 1: mean squared error" in done.stdout
