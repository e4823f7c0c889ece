"""The action journal: one fixed-size record a step, in a shared memory map of ``journal.bin``.

Why a map and not ``write()``: a store into a shared mapping is in the kernel's page cache the
moment it is made, so it survives SIGKILL exactly like a write(2) would, but it costs a memcpy and
never releases the GIL. A 20-byte ``os.write`` measured ~56 us a step in the recorder (the writer
thread took the GIL each time it was released), against ~1 us here.

Blocks are reserved with ``posix_fallocate`` before they are mapped: writing to an unbacked page of a
full disk would kill the process with SIGBUS; reserving turns that into an ENOSPC we can report.
The unused tail is zeros, which never pass the record CRC, so readers stop at the last real record.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

INITIAL_RECORDS = 8192


class Journal:
    def __init__(self, path: Path, record_size: int) -> None:
        self.path = path
        self._record = record_size
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        self._used = 0
        self._capacity = 0
        self._map: mmap.mmap | None = None
        try:
            self._grow(INITIAL_RECORDS * record_size)
        except OSError:
            os.close(self._fd)
            raise

    def _grow(self, capacity: int) -> None:
        os.posix_fallocate(self._fd, 0, capacity)  # raises ENOSPC now rather than SIGBUS later
        if self._map is not None:
            self._map.close()
        self._map = mmap.mmap(self._fd, capacity, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._capacity = capacity

    @property
    def used(self) -> int:
        return self._used

    def append(self, record: bytes) -> None:
        end = self._used + self._record
        if end > self._capacity:
            self._grow(self._capacity * 2)
        assert self._map is not None
        self._map[self._used : end] = record
        self._used = end

    def close(self, durable: bool) -> None:
        """Unmap; with ``durable``, trim the reserved tail and fsync (sealing does this)."""
        if self._map is None:
            return
        self._map.close()
        self._map = None
        if durable:
            os.ftruncate(self._fd, self._used)
            os.fsync(self._fd)
        os.close(self._fd)
