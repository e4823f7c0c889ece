"""Reading zstd frames fast: the chunk reader's (``shared.spool.chunks``) and the ALE start states' codec.

Its own module, beneath both the spool format and the env backends, so neither imports the other for it.
"""

from __future__ import annotations


class ZstdFrames:
    """Decodes zstd frames with one decompression context, reused, where ``zstandard`` is installed.

    numcodecs' ``zstd.decompress`` makes a context per call: ~20 us, most of it two ``cpuid``
    instructions, which trap to the hypervisor in a VM (perf), against ~1 us reused. Replay reads ~55
    small chunks an episode. Without zstandard (a venv made before it was a dependency) numcodecs
    decodes the same frames. One instance per thread: a context is not thread-safe.
    """

    def __init__(self) -> None:
        try:
            import zstandard
        except ImportError:
            self._context = None
            self.errors: tuple[type[Exception], ...] = ()
        else:
            self._context = zstandard.ZstdDecompressor()
            self.errors = (zstandard.ZstdError,)

    def decompress(self, data: bytes, size: int) -> bytes:
        """``data``'s content; ``size`` bounds it where a frame does not record its own."""
        if self._context is None:
            from numcodecs import zstd  # ~30 ms to import (it scans every installed package's entry points)

            return bytes(zstd.decompress(data))
        return self._context.decompress(data, max_output_size=size)
