"""Nothing machine-specific is published (issue 19.6, docs/endings.md): no path, home, host, login or pid.

A mixed spool (agents on Atari and VizDoom without ``--player``, a person with their own keymap file,
a damaged episode that gets quarantined) goes everywhere gymrec publishes: a local dataset, the
suite's Hub server (real clients), a Minari dataset and an MP4. Then every published byte is
scanned: raw bytes for the paths, and the decoded text (parquet columns and their schema metadata,
JSON, the card, the Hub's commit messages, the MP4's boxes other than the frames) for the short
names (hostname, login) as whole words, which raw compressed bytes would match by chance.
"""

from __future__ import annotations

import getpass
import io
import json
import re
import shutil
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pygame
import pytest

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import HumanController
from gymrec.recorder.play_source import keymap_record
from gymrec.shared.dataset import layout
from gymrec.shared.spool import schema
from gymrec.shared.spool.checksums import resign
from gymrec.shared.spool.directory import sealed_episodes
from gymrec.shared.spool.episode import Episode
from gymrec.uploader.claims import REASON_SUFFIX
from tests.conftest import run_cli
from tests.export_helpers import export_cli, to_local_dataset
from tests.recording import chunk_path
from tests.test_endings import window_session
from tests.test_play_human import DOWN, ScriptedClock, tap
from tests.uploader_helpers import clean_env, run_uploader

pytestmark = pytest.mark.slow  # uploads, exports and recordings in subprocesses: make test, not make check
REPO = "tester/published-bytes"
TOKEN = "hf_test_token"  # the hub fixture's
ATARI = "BreakoutNoFrameskip-v4"
LOGIN = "loginname7q"  # $USER for the recordings, whatever the login here: it must not be published


def _human_episode(spool: Path, keymap_file: Path) -> Path:
    """A person playing with their own keymap file, stored as the CLI stores it (``keymap_record``)."""
    config = PlayConfig(env_id=ATARI, spool=spool, seed=4, fps=1000.0, keymap_path=keymap_file)
    clock = ScriptedClock({0: tap(pygame.K_n), 1: tap(pygame.K_RIGHT), 6: [(DOWN, pygame.K_ESCAPE)]})
    (path,) = window_session(config, clock, lambda window, keymap, resolver: HumanController(
        window, resolver, keymap_record(keymap, resolver))).sealed
    return path


def _mixed_spool(root: Path, cwd: Path) -> tuple[Path, Path]:
    """The spool (two agent envs, a person, and a damaged copy to be quarantined); the damaged copy."""
    spool = root / "spool"
    for env_id in (ATARI, "VizdoomBasic-v1"):
        done = run_cli("gymrec-play", env_id, "--agent", "random", "--headless", "--max-steps", "40", "--seed", "3",
                       "--spool", str(spool), cwd=cwd, env={"USER": LOGIN, "LOGNAME": LOGIN})
        assert done.returncode == 0, done.stderr  # no --player: the login name must not become the player
    keymap_file = root / "keymaps" / "my-keys.toml"
    keymap_file.parent.mkdir()
    keymap_file.write_text('[bindings]\nright = "RIGHT"\nleft = "LEFT"\nspace = "FIRE"\n')
    human = _human_episode(spool, keymap_file)
    damaged = spool / schema.sealed_name("0badc0de-0000-4000-8000-000000000001")
    shutil.copytree(human, damaged)
    meta = json.loads((damaged / schema.METADATA_NAME).read_text())
    meta["attributes"]["episode_id"] = damaged.stem
    meta["attributes"] = resign(meta["attributes"])
    (damaged / schema.METADATA_NAME).write_text(json.dumps(meta))
    chunk_path(damaged, schema.REWARD, 0).write_bytes(b"not a zstd frame")
    return spool, damaged


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _strings(v)


def _mp4_boxes(data: bytes) -> Iterator[bytes]:
    """The MP4's top-level boxes except ``mdat`` (the frames): where its metadata lives."""
    at = 0
    while at + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[at:at + 8])
        if size == 1:
            size = struct.unpack(">Q", data[at + 8:at + 16])[0]
        size = size or len(data) - at
        if kind != b"mdat":
            yield data[at:at + size]
        at += max(size, 8)


def decoded_text(name: str, data: bytes) -> list[str]:
    """The text a reader of this published file gets to see, decoded."""
    if name.endswith(".parquet"):
        parquet = pq.ParquetFile(io.BytesIO(data))
        meta = parquet.schema_arrow.metadata or {}
        texts = [v.decode("utf-8", "replace") for kv in meta.items() for v in kv]
        return texts + list(_strings(parquet.read().to_pylist()))
    if name.endswith(".mp4"):
        return [m.decode("latin-1") for box in _mp4_boxes(data) for m in re.findall(rb"[\x20-\x7e]{3,}", box)]
    try:
        return [data.decode("utf-8")]
    except UnicodeDecodeError:
        return [m.decode() for m in re.findall(rb"[\x20-\x7e]{4,}", data)]


def leaks(published: dict[str, bytes], paths: list[str], words: list[str]) -> list[str]:
    """Where any of ``paths`` (raw bytes or decoded) or ``words`` (whole words, decoded) turns up."""
    found = []
    word_res = [(w, re.compile(rf"(?<![A-Za-z0-9_.-]){re.escape(w)}(?![A-Za-z0-9_-])")) for w in words if w]
    for name, data in sorted(published.items()):
        texts = decoded_text(name, data)
        for needle in paths:
            if needle.encode() in data or any(needle in t for t in texts):
                found.append(f"{name}: {needle!r}")
        for word, pattern in word_res:
            hit = next((m for t in texts for m in [pattern.search(t)] if m), None)
            if hit is not None:
                found.append(f"{name}: {word!r} in ...{hit.string[max(0, hit.start() - 40):hit.end() + 40]!r}...")
    return found


def _tree(root: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.relative_to(root)}": p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_nothing_machine_specific_is_published(tmp_path: Path, workdir: Path, hub: Any) -> None:
    spool, damaged = _mixed_spool(tmp_path, workdir)
    published: dict[str, bytes] = {}

    local = to_local_dataset(spool, tmp_path / "dataset", workdir)
    published |= _tree(local, "local")
    hub_spool = tmp_path / "hub-spool"
    shutil.copytree(spool, hub_spool)
    env = clean_env(HF_TOKEN=TOKEN, HF_ENDPOINT=hub.endpoint, HOME=str(workdir), HF_HOME=str(workdir / "hf-home"))
    done = run_uploader(["--spool", str(hub_spool), "--once", "--repo-id", REPO], workdir, env)
    assert done.returncode == 0, done.stderr
    published |= {f"hub/{k}": v for k, v in hub.files(REPO).items()}
    published |= {f"hub/commit-{i}.txt": f"{c.title}\n{c.message}".encode() for i, c in enumerate(hub.commits(REPO))}

    minari_root = tmp_path / "minari"
    exported = export_cli("minari", str(local), "gymrec/published-v0", "--env", ATARI, cwd=workdir,
                          env={"MINARI_DATASETS_PATH": str(minari_root)})
    assert exported.returncode == 0, exported.stderr
    published |= _tree(minari_root, "minari")
    human = next(p for p in sealed_episodes(spool) if Episode(p).attrs.keymap and p != damaged)
    video = tmp_path / "videos" / "human.mp4"
    video.parent.mkdir()
    made = export_cli("video", str(human), str(video), cwd=workdir)
    assert made.returncode == 0, made.stderr
    published["video/human.mp4"] = video.read_bytes()

    # what was published is what was meant to be: three episodes (the damaged one quarantined) in each
    index = [json.loads(row["attributes"]) for name, data in published.items()
             if name.startswith("local/") and layout.is_index_path(name.removeprefix("local/"))
             for row in pq.read_table(io.BytesIO(data)).to_pylist()]
    assert sorted(a["env_id"] for a in index) == sorted([ATARI, ATARI, "VizdoomBasic-v1"])
    assert all(a["player"] == "" and "host" not in a for a in index)  # no --player, no --publish-host
    (keymap,) = [a["keymap"] for a in index if a.get("keymap")]
    assert re.fullmatch(r"my-keys\.toml sha256:[0-9a-f]{16}", keymap["source"]), keymap["source"]
    assert any(name.startswith("minari/") for name in published) and len(published["video/human.mp4"]) > 1000

    home = str(Path.home())
    paths = [str(spool), str(tmp_path), str(workdir), "/tmp/", *([home] if len(home) > 1 else [])]
    host = socket.gethostname()
    words = [host, host.split(".")[0], getpass.getuser(), LOGIN]
    found = leaks(published, paths, words)
    assert not found, "\n".join(found)

    # the quarantine reason stays in the spool, but names the episode, never the claim file (host and pid)
    reasons = [*hub_spool.rglob("*" + REASON_SUFFIX), *(tmp_path / "dataset-spool").rglob("*" + REASON_SUFFIX)]
    assert len(reasons) == 2 and all(damaged.stem in r.read_text() for r in reasons)
    assert not leaks({r.name: r.read_bytes() for r in reasons}, [], [host])
    assert not [r.read_text() for r in reasons if re.search(r"_p\d+_[0-9a-f]{6}", r.read_text())]
