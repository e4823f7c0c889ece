"""The dataset card (README.md), rendered from ``meta/info.json`` alone: O(configs), never O(episodes).

It is never parsed back: every commit re-renders it from the info.json it writes in the same commit,
so totals written by concurrent uploaders cannot drift or be lost. No config is marked default:
``load_dataset(repo)`` without a config name then lists the configs instead of silently returning
one game.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import metadata
from typing import Any

import yaml

from gymrec.shared.dataset import layout
from gymrec.shared.spool.schema import ACTORS

LICENSE = "cc-by-4.0"
TASK_CATEGORIES = ("reinforcement-learning",)


@dataclass(frozen=True)
class Target:
    """Where the dataset lives, as a reader names it: a Hub repo id or a local directory."""

    name: str
    local: bool

    @property
    def replay_flag(self) -> str:
        return f"--local-dir {self.name}" if self.local else f"--repo-id {self.name}"


def project_url() -> str | None:
    """The project's home page from the installed package metadata (None when it declares none)."""
    try:
        meta = metadata.metadata("gymrec")
    except metadata.PackageNotFoundError:
        return None
    for entry in meta.get_all("Project-URL") or []:
        label, _, url = entry.partition(",")
        if label.strip().lower() in ("homepage", "home", "source", "repository"):
            return url.strip()
    home = meta.get_all("Home-page") or []
    return str(home[0]) if home else None


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def front_matter(info: dict[str, Any]) -> dict[str, Any]:
    configs = info["configs"]
    backends = sorted({b for c in configs.values() for b in c["backends"] if b})
    tags = ["gymrec", "gymnasium", "human-play", *backends, *configs]
    return {
        "license": LICENSE,
        "task_categories": list(TASK_CATEGORIES),
        "tags": list(dict.fromkeys(tags)),
        "pretty_name": "gymrec recordings",
        "configs": [
            {"config_name": name, "data_files": [{"split": "train", "path": c["data_files"]}]} for name, c in configs.items()
        ],
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


def _meanings(c: dict[str, Any]) -> list[str]:
    meanings = c.get("action_meanings")
    if not meanings:
        return ["Action meanings: not recorded by this gymrec version."]
    start = int(c["action_space"].get("start", 0)) if c["action_space"]["type"] == "Discrete" else 0
    label = "value" if c["action_space"]["type"] == "Discrete" else "element"
    return ["Action meanings:", "", *(f"- {label} {start + i}: `{m}`" for i, m in enumerate(meanings))]


def _quality(c: dict[str, Any]) -> list[str]:
    """The config's human-play summary, from info.json's summed aggregate (O(1) per config)."""
    q = c.get("quality") or {}
    rated = int(q.get("rated_episodes", 0))
    lines = []
    if rated:
        lines += [
            f"Human play ({plural(rated, 'episode')} with quality fields): mean active fraction "
            f"{q['active_fraction_sum'] / rated:.2f}, mean {q['inputs_per_minute_sum'] / rated:.1f} inputs per minute, "
            f"longest idle stretch {q['longest_idle_s_max']:.1f} s, {q['paused_s_sum']:.1f} s paused in all, "
            f"{plural(int(q['late_frames_sum']), 'late frame')} (worst {q['worst_late_ms_max']:.1f} ms late).",
        ]
    else:
        lines += ["Human play: no episode of this config carries quality fields (agents, or recorded before them)."]
    if q.get("lagged_episodes"):
        lines += ["", f"Pairing: {plural(int(q['lagged_episodes']), 'episode')} of human play recorded before gymrec 0.2 "
                      "pair a person's action t with observation t-1 (`pairing` is `lagged` in the index): shift "
                      "their human steps by one, or filter on `pairing == \"on_screen\"`."]  # fmt: skip
    if q.get("branch_episodes") or q.get("takeover_episodes"):
        lines += ["", f"Lineage: {plural(int(q.get('branch_episodes', 0)), 'branch episode')}, "
                      f"{plural(int(q.get('takeover_episodes', 0)), 'takeover episode')}."]  # fmt: skip
    return lines + [""]


def _observation_row(c: dict[str, Any], fmt: int) -> str:
    kind = str(c["observation_format"]).upper()
    if fmt >= 3:
        return (f"| `preview` | Image (lossless {kind}) or null | `{c['image_key']}` at the first step of each 64-step block, "
                "for browsing; every frame is in `frames/` (see Layout) |")  # fmt: skip
    return f"| `observation` | Image (lossless {kind}) | `{c['image_key']}`: what the player saw when choosing action t |"


def _config_section(name: str, c: dict[str, Any], target: Target, fmt: int) -> list[str]:
    extra = "".join(f"\n| `{leaf}` | list of numbers | observation leaf `{leaf}` at step t |" for leaf in c["extra_leaves"])
    info = "".join(f"\n| `info_{key}` | number | `info[{key!r}]` after step t |" for key in c["info_keys"])
    return [
        f"### `{name}` ({', '.join(c['env_ids'])})",
        "",
        f"![preview of {name}]({layout.preview_path(name)})",
        "",
        f"{plural(c['episodes'], 'episode')}, {plural(c['steps'], 'step')}, {c['seconds'] / 3600:.3f} hours, "
        f"{plural(c['shards'], 'shard')}.",
        "",
        "| column | type | meaning |",
        "|---|---|---|",
        "| `episode_id` | string | the episode (its row in the index: `meta/episodes/`) |",
        "| `step` | int64 | t, from 0 |",
        _observation_row(c, fmt),
        "| `observation_hash` | uint64 | xxh3-64 of the raw observation array (C order), for hash-first verification |",
        "| `action` | see below | the action applied at step t, in the env's native form |",
        "| `reward` | float64 | reward of step t |",
        "| `terminated`, `truncated` | bool | as returned by step t |",
        "| `timestamp` | float64 | wall-clock seconds (Unix) when action t was applied |",
        "| `shown_ns` | int64 or null | monotonic ns when observation t was on screen (null: no window, or not recorded) |",
        "| `decided_ns` | int64 or null | monotonic ns when action t was sampled from the player's input (null: as above) |",
        f"| `actor` | ClassLabel {list(ACTORS)} or null | who chose action t (see 'Timing and lineage'; null: not recorded) |{extra}{info}",
        "",
        *_quality(c),
        "Action encoding:",
        "",
        *_action_doc(c["action_space"]),
        "",
        *_meanings(c),
        "",
        f"Load: `load_dataset({target.name!r}, {name!r}, split='train')`.",
        "",
    ]


def _frames_layout(fmt: int) -> list[str]:
    if fmt < 3:
        return []
    return [
        "- `frames/<config>/<ss>/<shard>.parquet`: every observation, the final one included, in lossless blocks of",
        "  64 frames (each frame XORed with the one before, then zstd); the index row says which file and rows.",
        "  Read them with `gymrec.shared.dataset.frames` (or `gymrec.data`), which checks each frame's hash.",
    ]


def _frame_use(fmt: int) -> list[str]:
    if fmt < 3:
        return ["frame = ds[0]['observation']  # a PIL image, decoded losslessly"]
    return ["preview = ds[0]['preview']  # a PIL image of step 0; all frames: frames/ (see Layout)"]


def render(info: dict[str, Any], target: Target) -> str:
    """The whole card for the dataset ``info`` describes."""
    configs: dict[str, dict[str, Any]] = info["configs"]
    episodes = sum(c["episodes"] for c in configs.values())
    steps = sum(c["steps"] for c in configs.values())
    hours = sum(c["seconds"] for c in configs.values()) / 3600
    first = next(iter(configs), "<config>")
    fmt = layout.format_of(info)
    url = project_url()
    gymrec = f"[gymrec]({url})" if url else "gymrec"
    header = "---\n" + yaml.safe_dump(front_matter(info), sort_keys=False) + "---\n"
    rows = [f"| `{name}` | {c['episodes']} | {c['steps']} | {c['seconds'] / 3600:.3f} |" for name, c in configs.items()]
    body = [
        "# gymrec recordings",
        "",
        f"People (and agents) playing Gymnasium games, recorded with {gymrec}: lossless frames, exact",
        "actions, seeds and package versions, so every episode replays bit for bit.",
        "",
        "## Totals",
        "",
        "| config | episodes | steps | hours |",
        "|---|---|---|---|",
        *rows,
        f"| **all** | {episodes} | {steps} | {hours:.3f} |",
        "",
        "Hours are steps divided by each episode's recorded `fps`.",
        "",
        f"## Layout (gymrec dataset format {fmt})",
        "",
        "- `data/<config>/<ss>/<shard>.parquet`: one row per step t; each shard holds many episodes, in row",
        "  groups of at most 1,000 rows.",
        *_frames_layout(fmt),
        "- `meta/episodes/<config>/<ss>/<shard>.parquet`: the index, one row per episode: seed, env id, length,",
        "  return, end reason, player, collector, versions, spaces, keymap, fps, action meanings, which data file",
        "  and rows hold it, and the final observation (after the last step) as an Image column.",
        "  Human play adds the quality fields `active_fraction` (steps with any input / steps), `inputs_per_minute`,",
        "  `longest_idle_s`, `paused_s`, `late_frames`, `worst_late_ms`, and `input_log` (JSON: every key, button and",
        "  axis event with its monotonic ns time); lineage adds `parent_episode_id`, `branch_step`, `branched_at`,",
        "  `takeover`. They are null where they do not apply (agents, older episodes). Browser play (`gymrec-serve`)",
        "  adds `study`, `participant` (a salted hash of the study platform's id, never the id), `study_session`,",
        "  `client_browser`, `client_input` and the latency figures `rtt_p50_ms`, `rtt_p99_ms`, `display_p99_error_ms`",
        "  (empty or null for other episodes).",
        "- `meta/info.json`: format version, totals and features per config; the card is rendered from it.",
        "- `meta/preview/<config>.png`: a strip of frames per config.",
        "",
        "## Timing and lineage",
        "",
        "Action t is what the player did while observation t was on screen (`pairing` = `on_screen`):",
        "",
        "```",
        "screen   | obs t ................................. | obs t+1 ...",
        "         ^ shown_ns[t]                             ^ shown_ns[t+1]",
        "input    | keys and buttons gathered (input_log) |",
        "                                decided_ns[t] ^ that input is action t; env.step(action t); draw t+1",
        "```",
        "",
        "`shown_ns` and `decided_ns` share one monotonic clock with the index's `input_log` of the same episode",
        "(JSON columns `t_ns`, `kind`, `code`, `value`; event i happened at `origin_ns + t_ns[i]`, stamped within",
        "about 1 ms). `decided_ns - shown_ns` is how long observation t was up while action t was gathered: about one",
        "frame period, at least half of one, longer in step mode (a frame waits for a press). The input of action t",
        "is every event after `decided_ns[t-1]` up to `decided_ns[t]`; its first ~4-5 ms (the env step; the frame goes",
        "up at a fixed phase of the schedule) still show observation t-1. A reaction time is `origin_ns + t_ns[i] - shown_ns[t]` for the",
        "step t whose window holds event i. Human episodes recorded before gymrec 0.2 are `lagged` in the index's",
        "`pairing` column: their action t was gathered while observation t-1 was on screen.",
        "",
        "`actor` says who chose each action: `human` (the player), `agent` (a policy: headless agents, or the",
        "agent's turns in a `--takeover` session, where `takeover` is true in the index) or `copied` (a branch",
        "episode's inherited prefix). A player who rewinds and plays on seals the first episode as `branched`",
        "(`branched_at`: the step rewound to) and records a branch episode with `parent_episode_id` and",
        "`branch_step`: its first `branch_step` actions are the parent's, marked `copied`, so it replays on its own.",
        "",
        "## Configs and schema",
        "",
    ]
    for name, c in configs.items():
        body += _config_section(name, c, target, fmt)
    body += [
        "## Use",
        "",
        "Every config is its own game; name one (there is no default config):",
        "",
        "```python",
        "from datasets import load_dataset",
        f"ds = load_dataset({target.name!r}, {first!r}, split='train')",
        f"stream = load_dataset({target.name!r}, {first!r}, split='train', streaming=True)",
        *_frame_use(fmt),
        "```",
        "",
        "Verify that an episode replays bit-exactly in the same env (same packages as in its metadata):",
        "",
        "```",
        f"gymrec-replay <episode_id> {target.replay_flag}",
        "```",
        "",
    ]
    return header + "\n" + "\n".join(body)
