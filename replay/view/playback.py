"""One episode as the viewer plays it back: its steps as JSON and its frames as lossless PNG blocks.

Frames go out a block of ``BLOCK_STEPS`` at a time, stacked top to bottom in one PNG: a spool chunk is
64 frames compressed together, so a block costs one chunk decode and one request, where a PNG per frame
would decode the same chunk 64 times. PNG is lossless: the canvas shows exactly the recorded pixels.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.spool import schema
from gymrec.shared.spool.sources import EpisodeSource, SpoolSource

BLOCK_STEPS = schema.CHUNK_STEPS
PNG_LEVEL = 1  # a block of Breakout at level 1 is within ~10 % of level 6's size at a fraction of the time


def jsonable(value: Any) -> Any:
    """A native action (an int, numpy arrays, a dict of them) as JSON values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    return value


def actors(source: EpisodeSource) -> list[str]:
    """Who chose each action (``schema.ACTORS``): the recorded array where there is one, else the collector
    (a headless agent's episode keeps none, as the dataset's conversion fills it)."""
    n = source.length
    stored: list[int] | None = None
    if isinstance(source, SpoolSource) and schema.ACTOR in source.episode.time_keys:
        stored = source.episode.rows(schema.ACTOR, n, np.dtype(np.uint8)).tolist()
    table = getattr(source, "table", None)  # a DatasetSource's rows
    if table is not None and schema.ACTOR in table.column_names:
        stored = [int(v) for v in table.column(schema.ACTOR).to_pylist()]
    if stored is None:
        stored = [schema.ACTORS.index("human" if source.attrs.collector == "human" else "agent")] * n
    if len(stored) != n or any(not 0 <= v < len(schema.ACTORS) for v in stored):
        raise CorruptEpisodeError(f"{source.where}: the actor column is damaged", "the episode is damaged")
    return [schema.ACTORS[v] for v in stored]


def frame_shape(source: EpisodeSource) -> tuple[int, int, int]:
    """(height, width, channels) of the episode's picture (``check_recordable``: 8-bit HxW or HxWxC)."""
    leaf = next(leaf for leaf in source.obs_leaves if leaf.name == source.attrs.image_key)
    height, width = leaf.shape[:2]
    return height, width, leaf.shape[2] if len(leaf.shape) == 3 else 1


def steps_json(source: EpisodeSource) -> dict[str, Any]:
    """Everything the page shows per step (a few bytes a step), and how to fetch the frames."""
    steps = source.steps()
    height, width, channels = frame_shape(source)
    meanings = source.attrs.action_meanings
    return {
        "length": source.length,
        "fps": source.attrs.fps,
        "frame": {"height": height, "width": width, "channels": channels, "block_steps": BLOCK_STEPS,
                  "blocks": source.length // BLOCK_STEPS + 1},  # frames 0..length: the final one too
        "action_meanings": list(meanings) if meanings else None,
        "action": [jsonable(a) for a in steps.actions],
        "reward": steps.reward,
        "terminated": steps.terminated,
        "truncated": steps.truncated,
        "actor": actors(source),
    }  # fmt: skip


def _frames(source: EpisodeSource, start: int, stop: int) -> np.ndarray:
    key = source.attrs.image_key
    if isinstance(source, SpoolSource):  # one chunk decode for the whole block
        return source.episode.obs(key, start, stop)
    return source.images(start, stop)  # a format-3 dataset: its one or two frame blocks


def block_png(source: EpisodeSource, block: int) -> bytes | None:
    """Frames [block * BLOCK_STEPS, ...) (the final observation included) as one PNG; None past the end."""
    start = block * BLOCK_STEPS
    if block < 0 or start > source.length:
        return None
    frames = _frames(source, start, min(start + BLOCK_STEPS, source.length + 1))
    _, width, channels = frame_shape(source)
    stacked = np.ascontiguousarray(frames, dtype=np.uint8).reshape(-1, width, channels)
    image = Image.fromarray(stacked[:, :, 0] if channels == 1 else stacked)
    out = io.BytesIO()
    image.save(out, format="PNG", compress_level=PNG_LEVEL)
    return out.getvalue()
