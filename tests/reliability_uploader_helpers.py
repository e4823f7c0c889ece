"""Helpers for the uploader reliability suites: sizes, CLI runs, and exactly-once checks on the test Hub."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml

from gymrec.shared.dataset import layout
from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import UPLOADED_AREA
from gymrec.uploader.claims import CLAIMED_AREA, QUARANTINE_AREA, RECEIPT_SUFFIX
from gymrec.uploader.local import STAGING_DIR

BIN = Path(sys.executable).parent
STRESS = os.environ.get("GYMREC_STRESS", "") not in ("", "0")
WORK_AREA = f".uploader-work/{STAGING_DIR}"  # where uploader.daemon converts an episode before pushing it


def size(small: int, full: int) -> int:
    """``full`` under ``make stress`` (GYMREC_STRESS=1), ``small`` in ``make test``."""
    return full if STRESS else small


def spread(count: int, keep: int) -> list[int]:
    """The 1-based points 1..``count`` a campaign visits: all under ``make stress``, else ``keep`` of them
    spread evenly, the first and the last included (one: the middle; deterministic, so a failure reruns the same)."""
    if STRESS or count <= keep:
        return list(range(1, count + 1))
    if keep == 1:
        return [(count + 1) // 2]  # the middle one
    return sorted({1 + round(i * (count - 1) / (keep - 1)) for i in range(keep)})


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """A subprocess environment with no stray HF_/GYMREC_ settings; HOME and HF_HOME inside ``tmp``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GYMREC_"))}
    env |= {
        "HF_HUB_DISABLE_XET": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy",
        "HOME": str(tmp / "home"), "HF_HOME": str(tmp / "hf-home"), "XDG_CACHE_HOME": str(tmp / "xdg-cache"),
    }  # fmt: skip
    (tmp / "home").mkdir(exist_ok=True)
    return env | extra


def run(tool: str, args: list[str], cwd: Path, env: dict[str, str], timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / tool), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def start(tool: str, args: list[str], cwd: Path, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """A background CLI in its own process group, stdout/stderr to ``out``.stdout / ``out``.stderr (kept for scanning)."""
    return subprocess.Popen([str(BIN / tool), *args], cwd=cwd, env=env, start_new_session=True,
                            stdout=open(f"{out}.stdout", "wb"), stderr=open(f"{out}.stderr", "wb"))  # noqa: SIM115


def record_cli(spool: Path, env_id: str, episodes: int, steps: int, seed: int, cwd: Path, env: dict[str, str]) -> list[Path]:
    """Record with ``gymrec-play --agent random --headless``; the sealed episodes it printed."""
    done = run("gymrec-play", [env_id, "--agent", "random", "--headless", "--episodes", str(episodes),
                               "--max-steps", str(steps), "--seed", str(seed), "--spool", str(spool)], cwd, env)
    assert done.returncode == 0, done.stderr[-2000:]
    sealed = [Path(line) for line in done.stdout.splitlines() if line.endswith(schema.SEALED_SUFFIX)]
    assert len(sealed) == episodes, done.stdout
    return sealed


def wait_for(condition: Callable[[], bool], timeout: float, poll: float = 0.002) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll)
    return condition()


def kill(proc: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    return proc.wait(timeout=120)


def reap(proc: subprocess.Popen[bytes]) -> None:
    """For ``finally``: SIGKILL whatever is left of ``proc``'s process group (started by `start`)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)


# --- the Hub side ---------------------------------------------------------------------------------


@dataclass
class Landing:
    """What a repo's commit history and head say about each episode (dataset format 2)."""

    adds: Counter[str] = field(default_factory=Counter)  # commits whose new index shards list an episode
    data_adds: Counter[str] = field(default_factory=Counter)  # commits that added a data shard (by path)
    empty_commits: int = 0  # commits after the first that added no episode at all
    metas: dict[str, dict[str, Any]] = field(default_factory=dict)  # attributes per episode at the head
    listed: Counter[str] = field(default_factory=Counter)  # index rows per episode at the head
    rows: dict[str, int] = field(default_factory=dict)  # data rows per episode at the head
    readme: str = ""
    info: dict[str, Any] = field(default_factory=dict)

    def duplicates(self) -> int:
        return (sum(n - 1 for n in self.adds.values() if n > 1) + sum(n - 1 for n in self.data_adds.values() if n > 1)
                + sum(n - 1 for n in self.listed.values() if n > 1) + self.empty_commits)  # fmt: skip

    def missing(self, expected: set[str]) -> set[str]:
        return expected - set(self.metas)

    def extra(self, expected: set[str]) -> set[str]:
        return set(self.metas) - expected


def _index_ids(blob: bytes) -> list[str]:
    return [str(x) for x in pq.read_table(io.BytesIO(blob), columns=["episode_id"]).column("episode_id").to_pylist()]


def landing(hub: Any, repo: str) -> Landing:
    out = Landing()
    if not hub.has_repo(repo):
        return out
    commits = hub.commits(repo)
    blobs = hub.files(repo)
    for older, newer in zip(commits, commits[1:], strict=False):
        added = [p for p in newer.files if p not in older.files]
        index = [p for p in added if layout.is_index_path(p)]
        data = [p for p in added if p.startswith(layout.DATA_DIR + "/") and p.endswith(layout.SHARD_SUFFIX)]
        ids = [eid for p in index for eid in _index_ids(hub.state.get_object(newer.files[p].sha256))]
        out.adds.update(ids)
        out.data_adds.update(data)
        out.empty_commits += not ids
    shard_rows: dict[str, int] = {}
    for path, blob in blobs.items():
        if layout.is_index_path(path):
            for row in pq.read_table(io.BytesIO(blob)).to_pylist():
                eid = row["episode_id"]
                out.listed[eid] += 1
                out.metas[eid] = json.loads(row["attributes"])
                out.rows[eid] = int(row["row_count"])
                shard_rows[row["data_file"]] = shard_rows.get(row["data_file"], 0) + int(row["row_count"])
    for data_file, expected in shard_rows.items():
        actual = pq.read_metadata(io.BytesIO(blobs[data_file])).num_rows if data_file in blobs else -1
        if actual != expected:  # the index and the data shard disagree
            out.rows[f"shard:{data_file}"] = actual
    out.readme = blobs.get(layout.CARD_PATH, b"").decode()
    out.info = json.loads(blobs[layout.INFO_PATH]) if layout.INFO_PATH in blobs else {}
    return out


_ROW = re.compile(r"^\| (?:`(?P<slug>[^`]+)`|\*\*all\*\*) \| (?P<episodes>\d+) \| (?P<steps>\d+) \| (?P<hours>[0-9.]+) \|$")


def card_totals(readme: str) -> tuple[dict[str, Any], dict[str, tuple[int, int, str]]]:
    """(the YAML front matter, {config or "all": (episodes, steps, hours text)}) of a dataset card."""
    assert readme.startswith("---\n"), readme[:200]
    front = yaml.safe_load(readme.split("---\n")[1])
    section = readme.split("## Totals", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[int, int, str]] = {}
    for line in section.splitlines():
        match = _ROW.match(line.strip())
        if match:
            rows[match["slug"] or "all"] = (int(match["episodes"]), int(match["steps"]), match["hours"])
    return front, rows


def card_problems(land: Landing) -> list[str]:
    """Where the card or info.json disagree with the index they summarise (empty when they are right)."""
    front, rows = card_totals(land.readme)
    expected: dict[str, list[dict[str, Any]]] = {}
    for meta in land.metas.values():
        expected.setdefault(layout.env_slug(meta["env_id"]), []).append(meta)
    problems = [f"{k}: {v} rows in the data shard, not what the index says" for k, v in land.rows.items() if k.startswith("shard:")]
    configs = {c["config_name"]: c for c in front.get("configs", [])}
    if set(configs) != set(expected):
        problems.append(f"configs {sorted(configs)} != {sorted(expected)}")
    if any(c.get("default") for c in configs.values()):
        problems.append("a config is marked default")
    for slug, metas in expected.items():
        steps = sum(int(m["length"]) for m in metas)
        hours = f"{sum(int(m['length']) / float(m['fps']) for m in metas) / 3600:.3f}"
        if rows.get(slug) != (len(metas), steps, hours):
            problems.append(f"{slug}: card {rows.get(slug)} != {(len(metas), steps, hours)}")
        entry = land.info.get("configs", {}).get(slug, {})
        if (entry.get("episodes"), entry.get("steps")) != (len(metas), steps):
            problems.append(f"{slug}: info.json {entry.get('episodes')}, {entry.get('steps')} != {len(metas)}, {steps}")
        if slug in configs and configs[slug]["data_files"][0]["path"] != layout.data_glob(slug):
            problems.append(f"{slug}: data_files {configs[slug]['data_files']}")
    total_steps = sum(int(m["length"]) for m in land.metas.values())
    if rows.get("all", (None, None, ""))[:2] != (len(land.metas), total_steps):
        problems.append(f"all: card {rows.get('all')} != {(len(land.metas), total_steps)}")
    for eid, meta in land.metas.items():
        if land.rows.get(eid) != int(meta["length"]):
            problems.append(f"{eid}: the index has {land.rows.get(eid)} rows, the attributes say {meta['length']}")
    if land.info.get("format_version") != layout.FORMAT_VERSION:
        problems.append(f"info.json format_version {land.info.get('format_version')!r}")
    return problems


# --- the spool side -------------------------------------------------------------------------------


def claims_left(spool: Path) -> list[str]:
    folder = spool / CLAIMED_AREA
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def work_left(spool: Path) -> list[str]:
    folder = spool / WORK_AREA
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def uploaded_ids(spool: Path) -> set[str]:
    folder = spool / UPLOADED_AREA
    return {p.name[: -len(RECEIPT_SUFFIX)] for p in folder.glob("*" + RECEIPT_SUFFIX)} if folder.is_dir() else set()


def waiting_ids(spool: Path) -> set[str]:
    return {p.stem for p in spool.glob("*" + schema.SEALED_SUFFIX) if p.is_dir()}


def quarantined_ids(spool: Path) -> set[str]:
    folder = spool / QUARANTINE_AREA
    return {p.stem for p in folder.glob("*" + schema.SEALED_SUFFIX)} if folder.is_dir() else set()


def episode_contents(spool: Path) -> dict[tuple[str, str], str]:
    """{(episode dir name, path inside it): sha256} over every area: what a move keeps and an edit changes."""
    out = {}
    for path in spool.rglob("*"):
        rel = path.relative_to(spool).parts
        inside = [i for i, part in enumerate(rel) if part.endswith((schema.SEALED_SUFFIX, schema.PARTIAL_SUFFIX))]
        if path.is_file() and inside and not rel[0].startswith("."):
            i = inside[0]
            name = rel[i].split(".")[0] + schema.SEALED_SUFFIX if rel[0] == CLAIMED_AREA else rel[i]
            out[(name, "/".join(rel[i + 1 :]))] = digest(path)
    return out


def digest(path: Path) -> str:
    """A file's sha256; a huge one (an R5 poison pill: an 8 GB sparse zarr.json) by its size."""
    size = path.stat().st_size
    return hashlib.sha256(path.read_bytes()).hexdigest() if size < 1 << 30 else f"{size} bytes"


def tree(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root``."""
    return {str(p.relative_to(root)): digest(p) for p in root.rglob("*") if p.is_file()}


def stderr_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]
