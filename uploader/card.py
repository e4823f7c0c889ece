"""The dataset card (README.md), rendered from the dataset's own ``meta/episodes/*.json``.

It is never parsed back: every uploader regenerates it from the metadata at the head it commits on,
so totals written by concurrent uploaders cannot drift or be lost.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import yaml

from gymrec.uploader import layout

LICENSE = "cc-by-4.0"
TASK_CATEGORIES = ("reinforcement-learning", "robotics")


@dataclass(frozen=True)
class EnvTotals:
    slug: str
    env_ids: tuple[str, ...]
    backends: tuple[str, ...]
    episodes: int
    steps: int
    hours: float
    action_space: dict[str, Any]
    observation_space: dict[str, Any]
    image_key: str
    observation_format: str
    extra_leaves: tuple[str, ...]
    info_keys: tuple[str, ...]


def totals(metas: Iterable[dict[str, Any]]) -> list[EnvTotals]:
    by_slug: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for meta in metas:
        by_slug[meta["env_slug"]].append(meta)
    out = []
    for slug, group in sorted(by_slug.items()):
        first = min(group, key=lambda m: m["episode_id"])
        image_key = first["image_key"]
        spaces = first["observation_space"].get("spaces", {})
        out.append(
            EnvTotals(
                slug=slug,
                env_ids=tuple(sorted({m["env_id"] for m in group})),
                backends=tuple(sorted({m["backend"] for m in group})),
                episodes=len(group),
                steps=sum(int(m["length"]) for m in group),
                hours=sum(int(m["length"]) / float(m["fps"]) for m in group if float(m["fps"]) > 0) / 3600,
                action_space=first["action_space"],
                observation_space=first["observation_space"],
                image_key=image_key,
                observation_format=first.get("observation_format", "webp"),
                extra_leaves=tuple(k for k in spaces if k != image_key),
                info_keys=tuple(sorted(k[len(layout.INFO_PREFIX) :] for k in first.get("info_columns", []))),
            )
        )
    return out


def front_matter(envs: list[EnvTotals]) -> dict[str, Any]:
    tags = ["gymrec", "gymnasium", "human-play", *sorted({b for e in envs for b in e.backends}), *(e.slug for e in envs)]
    configs = [
        {"config_name": e.slug, "data_files": [{"split": "train", "path": layout.data_glob(e.slug)}]}
        | ({"default": True} if i == 0 else {})
        for i, e in enumerate(envs)
    ]
    return {
        "license": LICENSE,
        "task_categories": list(TASK_CATEGORIES),
        "tags": list(dict.fromkeys(tags)),
        "pretty_name": "gymrec recordings",
        "configs": configs,
    }


def _action_doc(desc: dict[str, Any], indent: str = "") -> list[str]:
    kind = desc["type"]
    if kind == "Dict":
        lines = [f"{indent}- a struct with one field per key:"]
        for key, sub in desc["spaces"].items():
            lines += [f"{indent}  - `{key}`:"] + _action_doc(sub, indent + "    ")
        return lines
    if kind == "Discrete":
        return [f"{indent}- `int64`: the Discrete({desc['n']}) value as the env takes it (start {desc.get('start', 0)})"]
    if kind == "MultiBinary":
        return [f"{indent}- list of `int8` (0/1), shape {desc['shape']}: element i is button i pressed"]
    if kind == "MultiDiscrete":
        return [f"{indent}- list of `{desc.get('dtype', 'int64')}`, nvec {desc['nvec']}"]
    if kind == "Box":
        return [f"{indent}- `{desc['dtype']}`, shape {desc['shape']} as nested lists (a scalar for shape [])"]
    return [f"{indent}- not recorded ({kind})"]


def _env_section(env: EnvTotals, repo: str) -> list[str]:
    extra = "".join(f"\n| `{leaf}` | list of numbers | observation leaf `{leaf}` at step t |" for leaf in env.extra_leaves)
    info = "".join(f"\n| `info_{key}` | number | `info[{key!r}]` after step t |" for key in env.info_keys)
    return [
        f"### `{env.slug}` ({', '.join(env.env_ids)})",
        "",
        f"![preview of {env.slug}]({layout.preview_path(env.slug)})",
        "",
        f"{env.episodes} episodes, {env.steps} steps, {env.hours:.3f} hours.",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
        "| `episode_id` | string | the episode (its metadata: `meta/episodes/<episode_id>.json`) |",
        "| `step` | int64 | t, from 0 |",
        f"| `observation` | Image (lossless {env.observation_format.upper()}) | `{env.image_key}`: what the player saw when choosing action t |",
        "| `observation_hash` | uint64 | xxh3-64 of the raw observation array (C order), for hash-first verification |",
        "| `action` | see below | the action applied at step t, in the env's native form |",
        "| `reward` | float64 | reward of step t |",
        "| `terminated`, `truncated` | bool | as returned by step t |",
        f"| `timestamp` | float64 | wall-clock seconds (Unix) when action t was applied |{extra}{info}",
        "",
        "Action encoding:",
        "",
        *_action_doc(env.action_space),
        "",
        f"Load: `load_dataset({repo!r}, {env.slug!r}, split='train')`.",
        "",
    ]


def render(metas: list[dict[str, Any]], repo: str) -> str:
    """The whole card for a dataset holding ``metas`` (``repo``: the id or path shown in examples)."""
    envs = totals(metas)
    steps = sum(e.steps for e in envs)
    hours = sum(e.hours for e in envs)
    first = envs[0].slug if envs else "<env-config>"
    header = "---\n" + yaml.safe_dump(front_matter(envs), sort_keys=False) + "---\n"
    rows = [f"| `{e.slug}` | {e.episodes} | {e.steps} | {e.hours:.3f} |" for e in envs]
    body = [
        "# gymrec recordings",
        "",
        "People (and agents) playing Gymnasium games, recorded with [gymrec](https://github.com/): lossless",
        "frames, exact actions, seeds and package versions, so every episode replays bit for bit.",
        "",
        "## Totals",
        "",
        "| config | episodes | steps | hours |",
        "|---|---|---|---|",
        *rows,
        f"| **all** | {sum(e.episodes for e in envs)} | {steps} | {hours:.3f} |",
        "",
        "Hours are steps divided by each episode's recorded `fps`.",
        "",
        "## Layout",
        "",
        "- `data/<config>/<episode_id>.parquet`: one row per step t of one episode.",
        "- `meta/episodes/<episode_id>.json`: the episode's seed, env id and kwargs, package versions, keymap,",
        "  fps, collector, player, length, return, end reason, spaces and the final observation's hash.",
        "- `meta/final/<episode_id>.png`: the final observation (after the last step), lossless PNG. Row t holds",
        "  the observation action t was chosen on, so the last frame of an episode is only here; non-image",
        "  leaves of the final observation are in the metadata as `final_<leaf>`.",
        "- `meta/preview/<config>.png`: a strip of frames per config.",
        "",
        "## Configs and schema",
        "",
    ]
    for env in envs:
        body += _env_section(env, repo)
    body += [
        "## Use",
        "",
        "```python",
        "from datasets import load_dataset",
        f"ds = load_dataset({repo!r}, {first!r}, split='train')",
        f"stream = load_dataset({repo!r}, {first!r}, split='train', streaming=True)",
        "frame = ds[0]['observation']  # a PIL image, decoded losslessly",
        "```",
        "",
        "Verify that an episode replays bit-exactly in the same env (same packages as in its metadata):",
        "",
        "```",
        f"gymrec-replay <episode_id> --repo-id {repo}",
        "```",
        "",
    ]
    return header + "\n" + "\n".join(body)


def metas_from_json(texts: Iterable[bytes | str]) -> list[dict[str, Any]]:
    return [json.loads(t) for t in texts]
