"""What differs between a recorded and a replayed observation, and the side-by-side PNG of it."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gymrec.shared.errors import SpoolError

log = logging.getLogger(__name__)
GAP = 4  # pixels between the three panels


@dataclass(frozen=True)
class LeafDiff:
    differing: int  # pixels (any channel) for images, elements otherwise
    max_abs: float
    shape_mismatch: bool = False


def is_image(array: np.ndarray) -> bool:
    return array.dtype == np.uint8 and (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (1, 3, 4)))


def compare(recorded: np.ndarray, replayed: np.ndarray) -> LeafDiff:
    if recorded.shape != replayed.shape:
        return LeafDiff(differing=max(recorded.size, replayed.size), max_abs=float("nan"), shape_mismatch=True)
    delta = np.abs(recorded.astype(np.float64) - replayed.astype(np.float64))
    if is_image(recorded) and recorded.ndim == 3:
        differing = int(np.count_nonzero(delta.max(axis=2)))
    else:
        differing = int(np.count_nonzero(delta))
    return LeafDiff(differing=differing, max_abs=float(np.nanmax(delta)) if delta.size else 0.0)


def _rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return np.repeat(frame[:, :, None], 3, axis=2)
    if frame.shape[2] == 1:
        return np.repeat(frame, 3, axis=2)
    return frame[:, :, :3]


def side_by_side(recorded: np.ndarray, replayed: np.ndarray) -> np.ndarray:
    """recorded | replayed | |difference|, the difference stretched so that one level is visible."""
    a, b = _rgb(recorded), _rgb(replayed)
    height = max(a.shape[0], b.shape[0])
    width = max(a.shape[1], b.shape[1])
    canvas = np.zeros((height, 3 * width + 2 * GAP, 3), dtype=np.uint8)
    canvas[: a.shape[0], : a.shape[1]] = a
    canvas[: b.shape[0], width + GAP : width + GAP + b.shape[1]] = b
    if a.shape == b.shape:
        delta = np.abs(a.astype(np.int16) - b.astype(np.int16)).max(axis=2)
        peak = int(delta.max())
        amplified = (delta.astype(np.float32) * (255.0 / peak)).astype(np.uint8) if peak else delta.astype(np.uint8)
        # Differing pixels in red, so a single changed pixel is still findable.
        canvas[: a.shape[0], 2 * (width + GAP) : 2 * (width + GAP) + a.shape[1], 0] = np.where(delta > 0, np.maximum(amplified, 64), 0)
    return canvas


def write_png(diff_dir: Path, name: str, recorded: np.ndarray, replayed: np.ndarray) -> Path:
    from PIL import Image  # ~40 ms of start-up, for a divergence only

    try:
        diff_dir.mkdir(parents=True, exist_ok=True)
        path = diff_dir / name
        Image.fromarray(side_by_side(recorded, replayed)).save(path, format="PNG")
    except OSError as e:
        raise SpoolError(f"cannot write the diff image into {diff_dir}: {e.strerror or e}", "pass --diff-dir DIR somewhere writable") from e
    log.info("wrote %s", path)
    return path
