"""``gymrec-export video``: one recorded episode as an MP4 at the recorded fps (PyAV's own ffmpeg).

Two modes:
- default: H.264 (libx264) in yuv420p at crf 18, ``+faststart``: plays in browsers, phones and
  every player. yuv420p halves the chroma resolution, so dimensions are padded to even.
- ``--lossless``: libx264rgb at crf 0, which keeps RGB without chroma subsampling; decoding it
  gives back the recorded frames bit for bit (tests/test_export_video.py checks it).
Frames are padded with black at the bottom/right only, so the game image keeps its coordinates.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error
import numpy as np

from gymrec.export import strip
from gymrec.export.info import EpisodeInfo, info_of
from gymrec.export.progress import ProgressFactory
from gymrec.export.staging import is_disk_full, staged
from gymrec.shared.errors import ExportDiskFullError, ExportError
from gymrec.shared.spool.sources import EpisodeSource

log = logging.getLogger(__name__)
DEFAULT_CRF = "18"  # visually lossless for H.264; ~x3 smaller than crf 0 on Atari frames
MAX_FPS_DENOMINATOR = 1001


@dataclass(frozen=True)
class VideoOptions:
    lossless: bool = False
    strip: bool = False
    scale: int = 1
    force: bool = False


@dataclass(frozen=True)
class VideoResult:
    episode_id: str
    path: Path
    frames: int
    bytes: int
    fps: float


def game_frame(obs: dict[str, np.ndarray], info: EpisodeInfo) -> np.ndarray:
    """The observation leaf that is the picture, as (H, W, 3) uint8."""
    image = obs.get(info.image_key)
    if image is None or image.dtype != np.uint8 or image.ndim not in (2, 3):
        raise ExportError(f"{info.episode_id[:8]}: observation {info.image_key!r} is not an image",
                          "only episodes with image observations can become videos")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.shape[2] == 1:
        return np.repeat(image, 3, axis=2)
    return np.ascontiguousarray(image[:, :, :3])


def _even(n: int) -> int:
    return n + (n % 2)


class Composer:
    """Game image (scaled by whole pixels), then the optional strip, padded to even dimensions."""

    def __init__(self, height: int, width: int, options: VideoOptions) -> None:
        self.scale = options.scale
        self.with_strip = options.strip
        self.game_h, self.game_w = height * self.scale, width * self.scale
        rows = self.game_h + (strip.STRIP_ROWS * self.scale if self.with_strip else 0)
        self.height, self.width = _even(rows), _even(self.game_w)

    def frame(self, image: np.ndarray, status: str) -> np.ndarray:
        out = np.zeros((self.height, self.width, 3), np.uint8)
        if self.scale > 1:
            image = image.repeat(self.scale, axis=0).repeat(self.scale, axis=1)
        out[: self.game_h, : self.game_w] = image
        if self.with_strip:
            band = strip.draw(self.width, self.scale, status)
            out[self.game_h : self.game_h + band.shape[0]] = band
        return out


def _statuses(source: EpisodeSource) -> Iterator[str]:
    steps = source.steps()
    total = 0.0
    for t in range(source.length + 1):
        action = steps.actions[t] if t < source.length else None
        yield strip.status_line(t, total, action, source.attrs.action_meanings)
        if t < source.length:
            total += steps.reward[t]


def _stream(container: Any, composer: Composer, fps: float, lossless: bool) -> Any:
    rate = Fraction(fps).limit_denominator(MAX_FPS_DENOMINATOR)
    stream = container.add_stream("libx264rgb" if lossless else "libx264", rate=rate)
    stream.width, stream.height = composer.width, composer.height
    stream.pix_fmt = "rgb24" if lossless else "yuv420p"
    stream.options = {"crf": "0", "preset": "veryfast"} if lossless else {"crf": DEFAULT_CRF, "preset": "medium"}
    return stream


def encode(source: EpisodeSource, out: Path, options: VideoOptions, progress: ProgressFactory) -> VideoResult:
    info = info_of(source)
    first = game_frame(source.observation(0), info)
    composer = Composer(first.shape[0], first.shape[1], options)
    bar = progress(source.length + 1, info.episode_id[:8], "frame")
    frames = 0
    try:
        with staged(out, options.force) as tmp:
            try:
                container = av.open(str(tmp), mode="w", format="mp4",
                                    options={"movflags": "+faststart"})
                try:
                    stream = _stream(container, composer, info.fps, options.lossless)
                    tick = 1 / Fraction(stream.average_rate)
                    for (_, obs), status in zip(source.observations(), _statuses(source), strict=True):
                        frame = av.VideoFrame.from_ndarray(composer.frame(game_frame(obs, info), status), format="rgb24")
                        frame.pts, frame.time_base = frames, tick  # one tick a frame: constant frame rate
                        container.mux(stream.encode(frame))
                        frames += 1
                        bar.update(1)
                    container.mux(stream.encode(None))
                finally:
                    container.close()
            except av.error.FFmpegError as e:
                if is_disk_full(e):
                    raise ExportDiskFullError(f"the disk holding {out.parent} is full",
                                              "free some space and run again; nothing was written under the target name") from e
                raise ExportError(f"ffmpeg could not write {out.name}: {e}") from e
            size = tmp.stat().st_size
    finally:
        bar.close()
    return VideoResult(info.episode_id, out, frames, size, info.fps)
