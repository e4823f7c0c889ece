"""The test side of the power-cut filesystem: mount it, freeze it, cut the power, remount, unmount.

``power_cut_mount(path)`` yields a ``PowerCutMount`` and always unmounts (``fusermount3 -u``, then
``umount -l``) and stops the daemon, however the test ends. Where FUSE cannot mount (no /dev/fuse,
no libfuse, no fusermount3, not allowed), it skips the test with the reason.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MOUNT_TIMEOUT_S = 20.0


class PowerCutMount:
    def __init__(self, mountpoint: Path, log: Path) -> None:
        self.path = mountpoint
        self._log: IO[bytes] = open(log, "wb")
        self._proc = subprocess.Popen([sys.executable, "-m", "tests.powercut.daemon", str(mountpoint)], cwd=REPO,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True)
        self.cuts = 0

    def _expect(self, what: str, timeout: float = MOUNT_TIMEOUT_S) -> dict[str, Any]:
        assert self._proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self._proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            line = self._proc.stdout.readline()
            if not line:
                break  # the daemon died: its log says why
            if line.startswith(f"powercut {what} "):
                return dict(json.loads(line.split(" ", 2)[2]))
        raise TimeoutError(f"the power-cut filesystem did not answer {what!r}; see {self._log.name}")

    def _send(self, command: str) -> None:
        assert self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()

    def wait_mounted(self) -> dict[str, Any]:
        report = self._expect("mounted")
        deadline = time.monotonic() + MOUNT_TIMEOUT_S
        while not os.path.ismount(self.path):  # init runs just before the kernel lists the mount
            assert time.monotonic() < deadline, "the mount never appeared"
            time.sleep(0.01)
        return report

    def freeze(self) -> None:
        """From now on every operation on the mount fails with EIO."""
        self._send("freeze")
        self._expect("frozen")

    def cut(self) -> dict[str, Any]:
        """Unmount, keep only what was durable, mount again; returns what the cut dropped.

        Every process using the mount must be gone first (the unmount waits for them)."""
        self._send("cut")
        self.cuts += 1
        return self.wait_mounted()

    def stats(self) -> dict[str, int]:
        self._send("stats")
        return {k: int(v) for k, v in self._expect("stats").items()}

    def close(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            self._send("quit")
        try:
            self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        finally:
            if os.path.ismount(self.path):
                subprocess.run(["fusermount3", "-u", "-z", str(self.path)], check=False, capture_output=True)
                subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self._log.close()


def unavailable() -> str | None:
    """Why this machine cannot mount the filesystem, or None."""
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse"
    if shutil.which("fusermount3") is None:
        return "no fusermount3 (Debian package fuse3)"
    try:
        import mfusepy  # noqa: F401  (loads libfuse: fails without libfuse3-3)
    except (ImportError, OSError) as e:
        return f"mfusepy cannot load libfuse ({e})"
    return None


@contextlib.contextmanager
def power_cut_mount(mountpoint: Path, log: Path) -> Iterator[PowerCutMount]:
    reason = unavailable()
    if reason:
        pytest.skip(f"FUSE is not available here: {reason}")
    mountpoint.mkdir(parents=True, exist_ok=True)
    mount = PowerCutMount(mountpoint, log)
    try:
        try:
            mount.wait_mounted()
        except (TimeoutError, AssertionError):
            pytest.skip(f"FUSE cannot mount here: {log.read_text(errors='replace').strip()[-300:] or 'no reason given'}")
        yield mount
    finally:
        mount.close()


def sync_tree(root: Path) -> None:
    """fsync every directory under ``root`` and ``root`` itself: the set-up is on disk before the test."""
    for path in sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [root]:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
