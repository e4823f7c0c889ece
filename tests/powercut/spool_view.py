"""What a spool and a local dataset hold, read from the outside (files only, plain zarr and pyarrow).

R7 takes one ``SpoolView`` at the instant of a power cut (every writer stopped) and one after
recovery and the uploader's restart, and compares them. Nothing here goes through the recorder's
or the uploader's own state, so what it measures is what the disk really kept.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq
import zarr

from gymrec.shared.spool import schema
from gymrec.shared.spool.directory import UPLOADED_AREA, UPLOADED_LOCAL_AREA
from gymrec.uploader.claims import CLAIMED_AREA, QUARANTINE_AREA
from tests.reliability_helpers import committed_steps, read_journal

AREAS = ("", CLAIMED_AREA, UPLOADED_LOCAL_AREA, UPLOADED_AREA, QUARANTINE_AREA)


@dataclass
class SpoolView:
    sealed: dict[str, int] = field(default_factory=dict)  # episode id -> length, in any area
    end_reasons: dict[str, str] = field(default_factory=dict)
    areas: Counter[str] = field(default_factory=Counter)  # episode id -> how many areas hold it
    where: dict[str, str] = field(default_factory=dict)  # episode id -> an area holding it
    open: dict[str, tuple[int, int]] = field(default_factory=dict)  # .partial id -> (journaled, synced) steps
    unreadable: dict[str, str] = field(default_factory=dict)  # episode id -> why
    quarantined: set[str] = field(default_factory=set)
    claimed: set[str] = field(default_factory=set)


def _attrs(episode: Path) -> dict[str, object]:
    return dict(json.loads((episode / "zarr.json").read_bytes())["attributes"])


def read_fully(episode: Path, length: int) -> str:
    """Why plain zarr cannot read every row of a sealed episode ('' when it can)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a cut between sealing's rename and its unlinks leaves files zarr warns about
            group = zarr.open_group(str(episode), mode="r")
            arrays = [(n, a) for n, a in group.arrays()] + [
                (f"{g}/{n}", a) for g, sub in group.groups() for n, a in sub.arrays()]
        if not arrays:
            return "no arrays"
        for name, array in arrays:
            if name.startswith(schema.INPUT_GROUP + "/"):
                continue  # one row per input event, not per step
            rows = length + 1 if name.startswith((schema.OBS_GROUP + "/", schema.HASH_GROUP + "/")) else length
            data = array[:]
            if len(data) != rows:
                return f"{name} has {len(data)} rows, not {rows}"
    except Exception as e:  # any failure to read is the finding
        return f"{type(e).__name__}: {e}"
    return ""


def view_spool(spool: Path, read_data: bool) -> SpoolView:
    view = SpoolView()
    for area in AREAS:
        base = spool / area if area else spool
        for path in sorted(base.iterdir()) if base.is_dir() else ():
            if not path.name.endswith(schema.SEALED_SUFFIX) or path.name.startswith("."):
                continue
            eid = path.name.split(".")[0]  # claims are <id>.<owner>.zarr
            view.areas[eid] += 1
            view.where[eid] = area or "spool"
            if area == QUARANTINE_AREA:
                view.quarantined.add(eid)
            if area == CLAIMED_AREA:
                view.claimed.add(eid)
            try:
                attrs = _attrs(path)
                view.sealed[eid] = int(attrs["length"])  # type: ignore[call-overload]
                view.end_reasons[eid] = str(attrs.get("end_reason", ""))
            except (OSError, ValueError, KeyError) as e:
                view.unreadable[eid] = f"attributes: {type(e).__name__}: {e}"
                continue
            why = read_fully(path, view.sealed[eid]) if read_data else ""
            if why:
                view.unreadable[eid] = why
    for partial in sorted(spool.glob("*" + schema.PARTIAL_SUFFIX)):
        journal = read_journal(partial)
        # committed.json is replaced only after the data it counts was fsynced: the synced prefix.
        view.open[partial.stem] = (journal.steps if journal is not None else 0, committed_steps(partial))
    return view


@dataclass(frozen=True)
class DatasetView:
    rows: dict[str, int]  # episode id -> rows in its parquet file
    duplicate_rows: int  # (episode id, step) pairs seen more than once across all files
    incomplete: dict[str, str]  # metadata present, data missing or short


def view_dataset(root: Path) -> DatasetView:
    # dataset format 2: one index row per episode in meta/episodes/<config>/<ss>/<shard>.parquet
    metas = {row["episode_id"]: row for p in sorted((root / "meta" / "episodes").rglob("*.parquet"))
             for row in pq.read_table(p, columns=["episode_id", "length"]).to_pylist()}
    seen: Counter[tuple[str, int]] = Counter()
    rows: dict[str, int] = {}
    for data in sorted((root / "data").rglob("*.parquet")):
        table = pq.read_table(data, columns=["episode_id", "step"]).to_pydict()
        seen.update(zip(table["episode_id"], table["step"], strict=True))
        for eid in set(table["episode_id"]):
            rows[eid] = rows.get(eid, 0) + table["episode_id"].count(eid)
    incomplete = {eid: f"{rows.get(eid, 0)} rows of {meta.get('length')}" for eid, meta in metas.items()
                  if rows.get(eid, 0) != meta.get("length")}
    return DatasetView({eid: rows.get(eid, 0) for eid in metas}, sum(n - 1 for n in seen.values() if n > 1), incomplete)
