"""No token: the same dataset layout in a local directory, loadable with ``datasets.load_dataset(PATH)``.

Several uploaders may share one local dataset: a file lock serialises the "is it there already? move
the files in, rewrite the card" step, the metadata file is moved in last (its presence means the
episode is complete), and the card is regenerated from ``meta/episodes/*.json`` every time.
Episodes written here move to the spool's ``uploaded-local/`` area; a later run with a token pushes
them to the Hub from there (see ``uploader.claims``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from filelock import FileLock
from gymrec.shared import layout
from gymrec.shared.errors import DatasetError
from gymrec.uploader import card
from gymrec.uploader.convert import Converted
from gymrec.uploader.hub import Receipt

log = logging.getLogger(__name__)
LOCK_NAME = ".gymrec.lock"
STAGING_DIR = ".staging"


def check_local_dir(path: Path) -> Path:
    if path.exists() and not path.is_dir():
        raise DatasetError(f"the local dataset {path} is a file", "pass --local-dir DIR with a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetError(f"cannot create the local dataset {path}: {e.strerror}", "pass --local-dir DIR somewhere writable") from e
    return path


def staging_dir(local_dir: Path, name: str) -> Path:
    """Where an episode is converted before it is moved in: the same filesystem, so moves are renames."""
    path = local_dir / STAGING_DIR / name
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def _read_metas(local_dir: Path) -> list[dict]:
    folder = local_dir / layout.EPISODES_DIR
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))] if folder.is_dir() else []


def write_card(local_dir: Path) -> None:
    text = card.render(_read_metas(local_dir), str(local_dir))
    tmp = local_dir / f".{layout.CARD_PATH}.tmp"
    tmp.write_text(text)
    os.replace(tmp, local_dir / layout.CARD_PATH)


class LocalWriter:
    """Adds converted episodes to one local dataset directory."""

    def __init__(self, local_dir: Path) -> None:
        self.local_dir = check_local_dir(local_dir)
        self._lock = FileLock(str(self.local_dir / LOCK_NAME))

    def add(self, converted: Converted) -> Receipt:
        root = self.local_dir
        with self._lock:
            if (root / converted.meta_file).exists():
                log.info("%s is already in %s", converted.episode_id, root)
                return Receipt("local", None, converted.episode_files, already_present=True, local_dir=str(root))
            moves = [converted.data_file, converted.final_file]
            if not (root / converted.preview_file).exists():
                moves.append(converted.preview_file)
            moves.append(converted.meta_file)  # last: its presence says the episode is complete
            for rel in moves:
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(converted.root / rel, root / rel)
            write_card(root)
        log.info("wrote %s to %s", converted.episode_id, root)
        return Receipt("local", None, converted.episode_files, local_dir=str(root))
