"""An episode's lineage tree: rewind branches (``parent_episode_id`` at ``branch_step``) and takeovers.

Built from the list rows only (the spool's attributes, the dataset's index columns): the whole family
of an episode, from its oldest ancestor the source holds down to every branch of a branch.
"""

from __future__ import annotations

from typing import Any

from gymrec.replay.view.catalog import Row


def _node(row: Row) -> dict[str, Any]:
    return {"episode_id": row["episode_id"], "branch_step": row.get("branch_step"), "branched_at": row.get("branched_at"),
            "takeover": bool(row.get("takeover")), "length": row.get("length"), "env_id": row.get("env_id"),
            "children": []}  # fmt: skip


def lineage(rows: list[Row], episode_id: str) -> dict[str, Any]:
    """{"root": nested nodes, "missing_parent": an ancestor id the source does not hold, or None}."""
    by_id = {str(row["episode_id"]): row for row in rows}
    children: dict[str, list[Row]] = {}
    for row in rows:
        parent = row.get("parent_episode_id")
        if parent:
            children.setdefault(str(parent), []).append(row)
    root, seen, missing = episode_id, {episode_id}, None
    while (parent := by_id[root].get("parent_episode_id")) is not None:
        if parent not in by_id:
            missing = parent
            break
        if parent in seen:  # a damaged cycle: stop where it closes
            break
        root = parent
        seen.add(root)

    def build(eid: str, path: frozenset[str]) -> dict[str, Any]:
        node = _node(by_id[eid])
        kids = sorted(children.get(eid, []), key=lambda r: (r.get("branch_step") or 0, str(r["episode_id"])))
        node["children"] = [build(str(k["episode_id"]), path | {eid}) for k in kids if k["episode_id"] not in path | {eid}]
        return node

    return {"root": build(root, frozenset()), "missing_parent": missing}
