"""Temporal frame blocks (dataset format 3): up to 64 consecutive frames, each XORed with the one before, then zstd.

Consecutive game frames differ in a few pixels, so the XOR of two is mostly zero bytes; and game
consoles and Doom draw from <= 256 colours, so one index byte holds an RGB pixel. zstd then shrinks
a block far more than the frames one by one. Every block decodes alone (its first frame is stored
whole, with its own palette): a window of K <= 64 steps reads one or two blocks. Any zstd level
decodes the same way; the writer's level is a size/speed choice.

Measured on 5,000 frames of random Breakout and 400 of VizDoom HealthGathering (a loaded 2-core
machine, one thread, one run): Breakout 14.7 B a frame at level 7 (31.5 at level 3; 33 for XOR
without the palette; format 2's data shards: 53), VizDoom 20 KB (XOR alone: 46 KB, format 2's WebP:
29 KB). Encoding at level 7 runs at ~4.5k Breakout frames/s a thread there.

Then mapping only the pixels a block changes, pixel pairs for whole pictures and zstd 3 for dense
blocks (``BlockCodec``): CPU time a frame, best of 5, one thread, a shared 2-core machine (load ~2),
448 frames of random BreakoutNoFrameskip and 256 of VizdoomBasic: Breakout encode 113-124 -> 46 us,
decode 95-99 -> 52 us (29 into a reused array); VizDoom encode 1,420-1,520 -> 820 us (19.1 -> 21.3 KB
a frame), decode 326-356 -> 318 us.
"""

from __future__ import annotations

import numpy as np

from gymrec.shared.errors import CorruptEpisodeError
from gymrec.shared.zstd_frames import ZstdFrames

BLOCK_FRAMES = 64
ZSTD_LEVEL = 7  # sparse blocks (see BlockCodec)
DENSE_ZSTD_LEVEL = 3  # blocks where the whole picture moves: see BlockCodec


XOR = 0x01  # flag: frame i is stored XORed with frame i-1
PALETTE = 0x02  # flag: RGB frames of <= 255 colours, stored as one index byte a pixel plus the palette
_NO_INDEX = 0xFF  # the colour table's "not in this palette": so a palette holds at most 255 colours
_MAX_COLOURS = 255
_PAIR_PIXELS = 1 << 17  # from here the pair table's ~0.3 ms pays (see _gather)


def _deltas(frames: np.ndarray) -> np.ndarray:
    """Frame 0 as is, frame i XOR frame i-1, as (n, bytes) rows."""
    flat = np.ascontiguousarray(frames).reshape(len(frames), -1).view(np.uint8)
    out = np.empty_like(flat)
    out[0] = flat[0]
    np.bitwise_xor(flat[1:], flat[:-1], out=out[1:])
    return out


def _undelta(deltas: np.ndarray, out: np.ndarray) -> None:
    """``_deltas``' inverse into ``out`` (may be ``deltas``), frame by frame, on 8-byte words where the
    frame size allows; straight from zstd's read-only bytes, without a writable copy first."""
    src, dst = (deltas.view(np.uint64), out.view(np.uint64)) if deltas.shape[1] % 8 == 0 else (deltas, out)
    dst[0] = src[0]
    for i in range(1, len(deltas)):
        np.bitwise_xor(src[i], dst[i - 1], out=dst[i])


class BlockCodec:
    """Encodes and decodes blocks. A block's bytes: one flags byte; with ``PALETTE`` a little-endian
    uint16 colour count and the colours (3 bytes each); then one zstd frame of the pixels (the index
    bytes with ``PALETTE``), each frame XORed with the one before with ``XOR``.

    Both transforms are chosen per block, by what the frames are. Game consoles and Doom draw from a
    palette of <= 256 colours, so an index byte holds an RGB pixel: a third of the bytes for zstd
    (VizDoom HealthGathering: 22 KB a frame against 30 KB raw and 29 KB as format 2's WebP). XOR makes
    a still background zero (Breakout), but doubles the bytes that change when the whole picture moves
    (Doom's turning camera: 46 KB a frame), so it is used only when most XOR bytes are zero.

    Mapping every pixel through the colour table is what costs (~90% of encode and decode before, on
    Breakout); zstd of the index deltas is ~6 us a frame. So both directions map only the pixels that
    change somewhere in the block (Breakout: a few %), and copy frame 0's pixels for the rest.
    A sparse block (< 1/8 of its XOR bytes non-zero; Breakout: 0.1%) is compressed at level 7, any
    other at level 3: on Breakout level 7 is 11 B a frame against 20 at level 3 for ~14 us a frame;
    on VizDoom Basic (38-46% non-zero) level 7 saves 10% (19.1 KB against 21.3) for 3.5x the time
    (918 us a frame against 256; a loaded 2-core machine).

    One zstd context each way, reused (``shared.zstd_frames``: a context per call costs ~20 us in a
    VM), and a 16 MB colour table allocated at the first palette block. Not thread-safe: one per thread.
    """

    def __init__(self, level: int = ZSTD_LEVEL, dense_level: int = DENSE_ZSTD_LEVEL) -> None:
        import zstandard

        self._sparse = zstandard.ZstdCompressor(level=level)
        self._dense = zstandard.ZstdCompressor(level=min(level, dense_level))
        self._frames = ZstdFrames()
        self._lut: np.ndarray | None = None  # packed RGB -> palette index, _NO_INDEX elsewhere

    def _palette(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(colours (P, 3), index bytes (n, H, W)) of RGB frames with <= 255 colours, else None."""
        if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[3] != 3:
            return None
        n, pixels = len(frames), frames.shape[1] * frames.shape[2]
        rgb = frames.reshape(n, pixels, 3)
        first = _keys(rgb[0])
        moving = _moving(rgb)
        later = _keys(rgb[1:].reshape(-1, 3) if moving is None else rgb[1:, moving])
        if self._lut is None:
            self._lut = np.full(1 << 24, _NO_INDEX, np.uint8)
        lut = self._lut
        colours = np.unique(first)
        try:
            if len(colours) > _MAX_COLOURS:
                return None
            lut[colours] = np.arange(len(colours), dtype=np.uint8)
            mapped = lut[later]
            if mapped.size and mapped.max() == _NO_INDEX:  # colours frame 0 lacks: rare, so looked for only then
                extra = np.unique(later[mapped == _NO_INDEX])
                if len(colours) + len(extra) > _MAX_COLOURS:
                    return None
                lut[extra] = np.arange(len(colours), len(colours) + len(extra), dtype=np.uint8)
                colours = np.concatenate([colours, extra])
                mapped = lut[later]
            index = np.empty((n, pixels), np.uint8)
            index[0] = lut[first]
            if moving is None:
                index[1:] = mapped.reshape(n - 1, pixels)
            else:
                index[1:] = index[0]
                index[1:, moving] = mapped.reshape(n - 1, len(moving))
        finally:
            lut[colours] = _NO_INDEX  # the table stays all _NO_INDEX between blocks
        table = np.ascontiguousarray(colours.astype("<u4").view(np.uint8).reshape(-1, 4)[:, :3])
        return table, index.reshape(frames.shape[:3])

    def encode(self, frames: np.ndarray) -> bytes:
        if not 1 <= len(frames) <= BLOCK_FRAMES:
            raise ValueError(f"a block holds 1..{BLOCK_FRAMES} frames, not {len(frames)}")
        flags, head = 0, b""
        pixels = np.ascontiguousarray(frames)
        found = self._palette(pixels)
        if found is not None:
            colours, pixels = found
            flags |= PALETTE
            head = len(colours).to_bytes(2, "little") + colours.tobytes()
        flat = pixels.reshape(len(pixels), -1).view(np.uint8)
        deltas = _deltas(flat)
        compressor, changed = self._dense, np.count_nonzero(deltas[1:])
        if changed * 2 < deltas[1:].size:
            flags |= XOR
            flat = deltas
            if changed * 8 < deltas[1:].size:
                compressor = self._sparse
        return bytes([flags]) + head + bytes(compressor.compress(flat.data))

    def decode(self, data: bytes | memoryview, n: int, shape: tuple[int, ...], dtype: np.dtype | str = "uint8",
               out: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
        """The ``n`` frames of one block, (n, *shape), writable (into ``out`` when given, C-contiguous);
        CorruptEpisodeError when ``data`` is not one."""
        dtype = np.dtype(dtype)
        pixels = n * int(np.prod(shape, dtype=np.int64))
        flags, offset, colours = data[0] if data else 0xFF, 1, None
        if flags & ~(XOR | PALETTE):
            raise CorruptEpisodeError(f"a frame block has unknown flags {flags:#x}", "the dataset is damaged")
        if flags & PALETTE:
            if len(shape) != 3 or shape[2] != 3 or dtype != np.uint8:
                raise CorruptEpisodeError(f"a palette frame block for frames of {shape} {dtype}", "the dataset is damaged")
            count = int.from_bytes(data[1:3], "little")
            if not 1 <= count <= 256 or len(data) < 3 + count * 3:
                raise CorruptEpisodeError(f"a frame block has a damaged palette ({count} colours)", "the dataset is damaged")
            colours = np.frombuffer(data, np.uint8, count * 3, 3).reshape(count, 3)
            offset, pixels = 3 + count * 3, pixels // 3
        size = pixels * (1 if colours is not None else dtype.itemsize)
        try:
            raw = self._frames.decompress(memoryview(data)[offset:], size)
        except (*self._frames.errors, ValueError, RuntimeError) as e:
            raise CorruptEpisodeError(f"a frame block does not decompress ({e})", "the dataset is damaged") from e
        if len(raw) != size:
            raise CorruptEpisodeError(f"a frame block holds {len(raw)} bytes, expected {size} ({n} frames of {shape})",
                                      "the dataset is damaged")  # fmt: skip
        if out is None:
            out = np.empty((n, *shape), dtype)
        if colours is None:
            flat = out.reshape(n, -1).view(np.uint8)
            if flags & XOR:
                _undelta(np.frombuffer(raw, np.uint8).reshape(n, -1), flat)
            else:
                flat.reshape(-1)[:] = np.frombuffer(raw, np.uint8)
            return out
        index = np.frombuffer(raw, np.uint8).reshape(n, -1)
        if index.size and int(index.max()) >= len(colours) and not flags & XOR:
            raise CorruptEpisodeError("a frame block indexes past its palette", "the dataset is damaged")
        moving = None
        if flags & XOR:
            # The last frame's changes tell a block whose whole picture moves (VizDoom) cheaply: then
            # every pixel is mapped, without looking for the moving ones first.
            if n > 1 and np.count_nonzero(index[-1]) * 4 < index.shape[1]:
                moving = _changed(index)
            index, deltas = np.empty_like(index), index
            _undelta(deltas, index)
            if index.size and int(index.max()) >= len(colours):
                raise CorruptEpisodeError("a frame block indexes past its palette", "the dataset is damaged")
        table = np.zeros((len(colours), 4), np.uint8)
        table[:, :3] = colours
        table32 = table.view(np.dtype("<u4")).reshape(-1)
        rgb = out.reshape(n, -1, 3)
        if moving is not None and len(moving) * 4 < index.shape[1]:
            # Frame 0 whole, copied to the others; then only the pixels that change in the block.
            _gather(table32, index[0], rgb[0])
            rgb[1:] = rgb[0]
            rgb[:, moving] = colours[index[:, moving]]
        else:
            _gather(table32, index.reshape(-1), rgb.reshape(-1, 3))
        return out


def _moving(rgb: np.ndarray) -> np.ndarray | None:
    """The pixels of (n, P, 3) frames that differ from frame 0 in some frame, or None when that is a
    quarter or more of them (the whole picture moves: then every pixel is mapped, and the last frame
    against the first tells that cheaply)."""
    n, pixels = rgb.shape[:2]
    if n == 1:
        return np.zeros(0, np.intp)
    if np.count_nonzero(rgb[-1] != rgb[0]) * 4 >= pixels:
        return None
    if (pixels * 3) % 8 == 0:
        # On 8-byte words, max != min: 23 -> 9 us a Breakout frame against bytes (best of 7, load ~5).
        # A word spans 3-4 pixels; all of them are taken (a superset maps the same).
        words = rgb.reshape(n, -1).view(np.uint64)
        first = np.flatnonzero(words.max(axis=0) != words.min(axis=0)) * 8
        span = np.minimum(first[:, np.newaxis] // 3 + np.arange(4), (first[:, np.newaxis] + 7) // 3)
        moving = np.unique(span)
    else:
        changed = np.bitwise_or.reduce(np.not_equal(rgb[1:], rgb[0]).reshape(n - 1, -1), axis=0)
        moving = np.flatnonzero(changed.reshape(pixels, 3).any(axis=1))
    return moving if len(moving) * 4 < pixels else None


def _changed(deltas: np.ndarray) -> np.ndarray:
    """The columns of (n, P) uint8 XOR deltas non-zero in some frame after the first (by 8-byte words
    where P allows: the same superset rule as ``_moving``)."""
    if len(deltas) == 1:
        return np.zeros(0, np.intp)
    if deltas.shape[1] % 8:
        return np.flatnonzero(np.bitwise_or.reduce(deltas[1:], axis=0))
    words = np.flatnonzero(np.bitwise_or.reduce(deltas[1:].view(np.uint64), axis=0))
    return (words[:, np.newaxis] * 8 + np.arange(8)).reshape(-1)


def _keys(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 pixels -> their packed little-endian 24-bit keys (uint32)."""
    rgb = rgb.reshape(-1, 3)
    if len(rgb) > 4096:
        # Read at a 3-byte stride from a copy one byte longer, masked: ~7x faster than packing channels.
        padded = np.empty(rgb.size + 1, np.uint8)
        padded[:-1] = rgb.reshape(-1)
        return np.ndarray((len(rgb),), np.dtype("<u4"), padded, 0, (3,)) & 0xFFFFFF
    wide = rgb.astype(np.uint32)
    return wide[:, 0] | (wide[:, 1] << 8) | (wide[:, 2] << 16)


def _gather(table32: np.ndarray, index: np.ndarray, rgb: np.ndarray) -> None:
    """``rgb`` (P, 3), C-contiguous, = the colours of ``index`` (P,). A 4-byte gather a pixel, stored at a
    3-byte stride in ascending order, each store's fourth byte overwritten by the next pixel's first:
    ~6x faster than indexing a (P, 3) table. Many pixels go two at a time through a 65,536-entry table
    of pixel pairs (8-byte stores at a 6-byte stride): a VizDoom block 206 -> 127 us a frame, the
    table's ~0.3 ms a block included (best of 5, load ~5). The last pair or pixel is stored bytewise."""
    count, target = len(index), rgb.reshape(-1)
    if count >= _PAIR_PIXELS:
        pairs = count // 2
        wide = np.zeros(256, np.dtype("<u8"))
        wide[: len(table32)] = table32
        halves = np.arange(1 << 16, dtype=np.dtype("<u2")).view(np.uint8).reshape(-1, 2)  # (low, high) byte
        table = wide[halves[:, 0]] | (wide[halves[:, 1]] << np.uint64(24))
        values = np.take(table, index[: pairs * 2].view(np.dtype("<u2")))
        np.ndarray((pairs - 1,), np.dtype("<u8"), target, 0, (6,))[...] = values[:-1]
        target[6 * pairs - 6 : 6 * pairs] = values[-1:].view(np.uint8)[:6]
        done = pairs * 2
    else:
        values = np.take(table32, index)
        if count > 1:
            np.ndarray((count - 1,), np.dtype("<u4"), target, 0, (3,))[...] = values[:-1]
        done = count - 1
    if done < count:
        target[-3:] = table32[index[-1:]].view(np.uint8)[:3]


def encode_block(frames: np.ndarray, codec: BlockCodec | None = None) -> bytes:
    """(n, H, W, C) frames, n <= ``BLOCK_FRAMES`` -> one block's bytes. Pass a codec to reuse its contexts."""
    return (codec or BlockCodec()).encode(frames)


def decode_block(data: bytes | memoryview, n: int, shape: tuple[int, ...], dtype: np.dtype | str = "uint8",
                 codec: BlockCodec | None = None) -> np.ndarray:  # fmt: skip
    """``encode_block``'s inverse: (n, *shape) frames of ``dtype``."""
    return (codec or BlockCodec()).decode(data, n, tuple(shape), dtype)
