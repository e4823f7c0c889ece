"""ALE episode starts without reloading the ROM: reset plainly, store the start state, restore it.

ale-py 0.12's ``reset(seed=...)`` reloads the ROM (~100 ms, 45 % of a recording's time); a plain
``reset()`` costs ~5 ms. So a session seeds its first episode only and resets the later ones plainly.
Each episode stores its start: the emulator state right after its reset and the env's own
``np_random`` (it draws the stochastic frameskips of v0/v4 ids; nothing else in ``AtariEnv`` reads
it). Replay and recovery restore both after a plain reset, so every episode replays alone, in any
env, whatever ran in it before.

Only for envs without sticky actions (``repeat_action_probability == 0``: v0/v4 ids): there ALE's
RNG is drawn but never changes an outcome, and a post-reset emulator state differs from any other
post-reset state in 3 bytes (frame counters), so the start is canonical and the recorded seed stays
exact for every episode (what a Minari export's ``recover_environment`` relies on). ``np_random`` is
reseeded from the episode's seed exactly as ``AtariEnv.seed_game`` does. Sticky envs (v5) keep
``reset(seed)`` every episode (``SeededStarter``): their start depends on ALE's RNG, which only a ROM
reload seeds, and storing it instead (6.6 KB an episode, measured) would leave the seed inexact.

Size, measured on Breakout: ``cloneState`` serialises to 7.7 KB (14.4 KB with the RNG); XOR'd
against a fresh env's post-reset state and zstd'd it is 34 B, so P3 (<= 160 B/frame) is untouched.
A hash of the serialised state proves the decoded state before it is restored.
"""

from __future__ import annotations

import base64
import importlib.metadata
from collections.abc import Mapping
from typing import Any

import ale_py
import gymnasium as gym
import numpy as np
import xxhash
from gymnasium.utils import seeding

from gymrec.shared.envs.starters import Started
from gymrec.shared.errors import StartStateError
from gymrec.shared.zstd_frames import ZstdFrames

FORMAT = "ale-cloneState"
XOR_ZSTD = "xor-zstd"  # XOR against a fresh env's post-reset state (no RNG), then zstd
ZSTD = "zstd"  # the whole state with the RNG, zstd'd
_LEVEL = 19  # 3 ms for 14 KB, once an episode; level 3 saves 7 % less
_MAX_STATE = 1 << 20  # bytes: a bound for a frame that does not record its size (a state is ~14 KB)


def _version() -> str:
    try:
        return importlib.metadata.version("ale-py")
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _xor(data: bytes, reference: bytes) -> bytes:
    a = np.frombuffer(data, np.uint8)
    b = np.frombuffer(reference, np.uint8)
    return (a ^ b).tobytes()


def _np_random_state(env: gym.Env) -> dict[str, Any]:
    # PCG64's 128-bit words exceed JSON-safe integers in some readers: keep them as text.
    state = env.unwrapped.np_random.bit_generator.state
    return {"bit_generator": state["bit_generator"], "state": {k: str(v) for k, v in state["state"].items()},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}


def _seed_np_random(env: gym.Env, seed: int) -> None:
    """What ``AtariEnv.seed_game(seed)`` does to ``np_random``, without its ROM reload."""
    np_seed = int(np.random.SeedSequence(seed).generate_state(n_words=2)[0])
    env.unwrapped.np_random = seeding.np_random(np_seed)[0]


def _set_np_random(env: gym.Env, saved: Mapping[str, Any]) -> None:
    generator = np.random.Generator(getattr(np.random, str(saved["bit_generator"]))())
    generator.bit_generator.state = {
        "bit_generator": saved["bit_generator"], "state": {k: int(v) for k, v in saved["state"].items()},
        "has_uint32": int(saved["has_uint32"]), "uinteger": int(saved["uinteger"]),
    }
    env.unwrapped.np_random = generator


def is_sticky(env: gym.Env) -> bool:
    return float(env.unwrapped.ale.getFloat("repeat_action_probability")) > 0.0  # type: ignore[attr-defined]


class AleStarter:
    """Seeds the first episode it starts, resets the others plainly; restores a stored start."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        self.ale = env.unwrapped.ale  # type: ignore[attr-defined]
        self.sticky = is_sticky(env)  # AleBackend uses SeededStarter then; kept so a state decodes anyway
        self.version = _version()
        self._seeded = False
        # Made once per env, before any episode: the same procedure gives the same bytes in replay.
        env.reset()
        self.reference = bytes(self.ale.cloneState(include_rng=False).serialize())

    def start(self, seed: int) -> Started:
        import numcodecs  # ~30 ms to import: recording needs it, a replay's restart does not

        seeded = not self._seeded
        if seeded:
            obs, info = self.env.reset(seed=seed)
        else:
            obs, info = self.env.reset()
            _seed_np_random(self.env, seed)
        self._seeded = True
        data = bytes(self.ale.cloneState(include_rng=self.sticky).serialize())
        codec = XOR_ZSTD if not self.sticky and len(data) == len(self.reference) else ZSTD
        packed = _xor(data, self.reference) if codec == XOR_ZSTD else data
        attrs = {
            "format": FORMAT,
            "ale_py": self.version,
            "codec": codec,
            "data": base64.b64encode(numcodecs.Zstd(level=_LEVEL).encode(packed)).decode("ascii"),
            "xxh3": xxhash.xxh3_64_hexdigest(data),
            "np_random": _np_random_state(self.env),
            # reset(seed=seed) alone reproduces this start: the fallback when the state cannot be restored.
            "seeded": seeded,
        }
        return Started(obs, info, {"start_state": attrs})

    def _decode(self, saved: Mapping[str, Any]) -> bytes:
        if saved.get("format") != FORMAT or saved.get("codec") not in (ZSTD, XOR_ZSTD):
            raise ValueError(f"unknown start-state format {saved.get('format')!r}/{saved.get('codec')!r}")
        if str(saved.get("ale_py")) != self.version:
            raise ValueError(f"it was saved by ale-py {saved.get('ale_py')} and ale-py {self.version} is installed")
        frames = ZstdFrames()
        try:
            packed = frames.decompress(base64.b64decode(str(saved["data"])), _MAX_STATE)
        except frames.errors as e:
            raise ValueError(f"its data cannot be decoded ({e})") from e
        data = packed if saved["codec"] == ZSTD else _xor(packed, self.reference) if len(packed) == len(self.reference) else b""
        if xxhash.xxh3_64_hexdigest(data) != saved.get("xxh3"):
            raise ValueError("it does not decode to the state that was saved")
        return data

    def restart(self, seed: int, start_state: Mapping[str, Any] | None) -> Started:
        saved = start_state
        if saved is None:  # recorded before start states existed: seeded every episode
            obs, info = self.env.reset(seed=seed)
            return Started(obs, info)
        try:
            data = self._decode(saved)
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            return self._fall_back(seed, saved, str(e))
        self.env.reset()  # the wrappers' own state (time limit, order enforcing), and sticky's last action
        self.ale.restoreState(ale_py.ALEState(data))
        _set_np_random(self.env, saved["np_random"])
        # What AtariEnv.reset returns, read after the restore (ale-py 0.9-0.12 keep these two names).
        unwrapped: Any = self.env.unwrapped
        return Started(unwrapped._get_obs(), unwrapped._get_info())

    def _fall_back(self, seed: int, saved: Mapping[str, Any], why: str) -> Started:
        if not saved.get("seeded"):
            raise StartStateError(
                f"the episode's start state cannot be restored: {why}",
                f"install ale-py {saved.get('ale_py')} to replay it (only a session's first episode replays from its seed)",
            )
        obs, info = self.env.reset(seed=seed)
        return Started(obs, info, note=f"the start state cannot be restored ({why}); replaying from the seed, which is exact for this episode")
