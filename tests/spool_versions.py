"""Turn an episode sealed by this gymrec into what earlier versions left in users' spools (tests only)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from gymrec.shared.spool import schema
from gymrec.shared.spool.checksums import resign, sign


def attributes(episode: Path) -> dict[str, Any]:
    return dict(json.loads((episode / schema.METADATA_NAME).read_text())["attributes"])


def write_attributes(episode: Path, attrs: dict[str, Any], sign_them: bool = True) -> None:
    """Replace the root attributes; ``sign_them``: as a tool editing them on purpose would (``resign``)."""
    doc = json.loads((episode / schema.METADATA_NAME).read_text())
    doc["attributes"] = resign(attrs) if sign_them else attrs
    (episode / schema.METADATA_NAME).write_text(json.dumps(doc))


def as_previous_version(episode: Path) -> None:
    """The layout before sealed episodes were plain Zarr: checksums.json, committed.json and
    writer.lock beside the nodes, no checksum of the attributes, the input log as JSON attributes."""
    attrs = attributes(episode)
    sums = attrs.pop(schema.CHECKSUMS_ATTR)
    files = {k: v for k, v in sums["metadata"].items() if not k.startswith(schema.INPUT_GROUP + "/")}
    log = attrs.get("input_log")
    if isinstance(log, dict) and "events" in log:
        from gymrec.shared.spool.episode import Episode

        attrs["input_log"] = Episode(episode).input_log()
        shutil.rmtree(episode / schema.INPUT_GROUP)
    write_attributes(episode, attrs, sign_them=False)
    (episode / schema.CHECKSUMS_NAME).write_bytes(sign({"files": files}))
    (episode / schema.COMMITTED_NAME).write_bytes(sign({"steps": int(attrs["length"]), "sealed": True}))
    (episode / schema.LOCK_NAME).touch()
