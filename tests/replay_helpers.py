"""Helpers for the replay tests: record small real episodes, tamper with copies, hash spool trees."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import zarr

from gymrec.shared.spool import schema
from gymrec.shared.spool.checksums import resign
from gymrec.shared.spool.chunks import stored_digest
from tests.recording import record_episode  # noqa: F401  (re-exported for the suites)
from tests.uploader_helpers import to_dataset  # noqa: F401  (re-exported for the suites)

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def gymrec_play_works() -> bool:
    exe = BIN / "gymrec-play"
    if not exe.exists():
        return False
    try:
        return subprocess.run([str(exe), "--help"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def record_in_subprocess(spool: Path, env_id: str, steps: int, seed: int, cwd: Path | None = None) -> Path:
    """Record in a fresh process (stable-retro allows one emulator per process)."""
    code = (
        "import sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]);"
        "from tests.replay_helpers import record_episode;"
        "print(record_episode(Path(sys.argv[2]), sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(REPO), str(spool), env_id, str(steps), str(seed)],
        capture_output=True, text=True, timeout=120, cwd=cwd, check=True,
    )  # fmt: skip
    return Path(out.stdout.strip().splitlines()[-1])


def tree_digest(root: Path) -> str:
    """A hash of every path, size and content under ``root``: proves nothing was modified."""
    h = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        h.update(str(path.relative_to(root)).encode())
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()


def copy_episode(src: Path, dest_spool: Path, new_id: str | None = None) -> Path:
    """A copy under a fresh episode id, so tampering never touches the original."""
    new_id = new_id or str(uuid.uuid4())
    dest = dest_spool / schema.sealed_name(new_id)
    dest_spool.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, dest)
    meta_path = dest / "zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["attributes"] = resign({**meta["attributes"], "episode_id": new_id})  # a copy re-signs what it edits
    meta_path.write_text(json.dumps(meta))
    return dest


def edit_attributes(episode: Path, *replacements: tuple[str, str]) -> None:
    """Replace text in an episode's attributes as a tool editing them on purpose would: re-signed."""
    meta_path = episode / "zarr.json"
    text = meta_path.read_text()
    for old, new in replacements:
        text = text.replace(old, new)
    meta = json.loads(text)
    meta["attributes"] = resign(meta["attributes"])
    meta_path.write_text(json.dumps(meta))


def rewrite_rows(episode: Path, array: str, index: int, value: np.ndarray | float | int | bool) -> None:
    """Overwrite one row of one array of a sealed episode with zarr, as a deliberate edit: the chunk
    digests are brought up to date, so replay sees a divergence, not corruption (tests only)."""
    group = zarr.open_group(str(episode), mode="r+")
    arr = group[array]
    assert isinstance(arr, zarr.Array)
    arr[index] = value
    redigest(episode)


def redigest(episode: Path) -> None:
    """After chunks were edited on purpose: the chunk digests sealing kept, recomputed, re-signed."""
    meta_path = episode / "zarr.json"
    meta = json.loads(meta_path.read_text())
    attrs = meta["attributes"]
    sums = attrs.get(schema.CHECKSUMS_ATTR)
    if not isinstance(sums, dict) or "chunks" not in sums:
        return
    digests = {name: stored_digest(episode, name) for name in sums["chunks"]}
    meta["attributes"] = resign({**attrs, schema.CHECKSUMS_ATTR: {**sums, "chunks": digests}})
    meta_path.write_text(json.dumps(meta))


def read_row(episode: Path, array: str, index: int) -> np.ndarray:
    group = zarr.open_group(str(episode), mode="r")
    arr = group[array]
    assert isinstance(arr, zarr.Array)
    return np.asarray(arr[index])


def replay_cli(args: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy", **(env or {})}
    full_env.pop("GYMREC_DEBUG", None)
    return subprocess.run(
        [str(BIN / "gymrec-replay"), *args], capture_output=True, text=True, timeout=180, cwd=cwd, env=full_env
    )


def flip_a_decodable_bit(chunk: Path) -> None:
    """Issue 13.2: flip one bit of a chunk where zstd still decodes without complaint (only the
    crc32c can tell)."""
    import numcodecs

    data = bytearray(chunk.read_bytes())
    body, codec = bytes(data[:-4]), numcodecs.Zstd()  # the last 4 bytes are zarr's crc32c
    clean = codec.decode(body)
    for offset in range(len(body) // 2, len(body)):
        flipped = bytearray(body)
        flipped[offset] ^= 0x10
        try:
            decoded = codec.decode(bytes(flipped))
        except RuntimeError:
            continue
        if len(decoded) == len(clean) and decoded != clean:
            data[offset] ^= 0x10
            chunk.write_bytes(bytes(data))
            return
    raise AssertionError(f"no offset of {chunk} decodes after a bit flip: the case stages nothing")
