"""ALE episode starts without reloading the ROM: reset plainly, store the start state, restore it.

ale-py 0.12's ``reset(seed=...)`` reloads the ROM (~100 ms, 45 % of a recording's time); a plain
``reset()`` costs ~5 ms. So a session seeds its first episode only and resets the later ones plainly.
Each episode then stores its start: the emulator state right after its reset and the env's own
``np_random`` (it draws the stochastic frameskips of v0/v4 ids; nothing else in ``AtariEnv`` reads
it). Replay restores both after a plain reset, so every episode replays alone, in any env.

Size, measured on Breakout: ``cloneState(include_rng=True)`` serialises to 14.4 KB, 6.6 KB zstd'd,
about 10 B a frame on a random-play episode; P3 (<= 160 B/frame, 159 measured) cannot pay that.
- The emulator part of a post-reset state differs from a fresh env's post-reset state in 3 bytes
  (frame counters): XOR'd against that reference and zstd'd it is 34 B.
- ALE's RNG only decides sticky actions. With ``repeat_action_probability == 0`` (v0/v4 ids) it is
  drawn but never changes an outcome, so it is stored only when the env is sticky (v5: ~6.6 KB, the
  RNG's 624 words as text, with no reference to XOR against: a fresh env's RNG is random).
A hash of the serialised state proves the decoded state before it is restored.
"""

from __future__ import annotations

import base64
import importlib.metadata
from collections.abc import Mapping
from typing import Any

import ale_py
import gymnasium as gym
import numcodecs
import numpy as np
import xxhash

from gymrec.shared.backends import Started
from gymrec.shared.errors import StartStateError

FORMAT = "ale-cloneState"
XOR_ZSTD = "xor-zstd"  # XOR against a fresh env's post-reset state (no RNG), then zstd
ZSTD = "zstd"  # the whole state with the RNG, zstd'd
_LEVEL = 19  # 3 ms for 14 KB, once an episode; level 3 saves 7 % less


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


def _set_np_random(env: gym.Env, saved: Mapping[str, Any]) -> None:
    generator = np.random.Generator(getattr(np.random, str(saved["bit_generator"]))())
    generator.bit_generator.state = {
        "bit_generator": saved["bit_generator"], "state": {k: int(v) for k, v in saved["state"].items()},
        "has_uint32": int(saved["has_uint32"]), "uinteger": int(saved["uinteger"]),
    }
    env.unwrapped.np_random = generator


class AleStarter:
    """Seeds the first episode it starts, resets the others plainly; restores a stored start."""

    def __init__(self, env: gym.Env) -> None:
        self.env = env
        self.ale = env.unwrapped.ale  # type: ignore[attr-defined]
        self.sticky = float(self.ale.getFloat("repeat_action_probability")) > 0.0
        self.version = _version()
        self._seeded = False
        # Made once per env, before any episode: the same procedure gives the same bytes in replay.
        env.reset()
        self.reference = bytes(self.ale.cloneState(include_rng=False).serialize())

    def start(self, seed: int) -> Started:
        seeded = not self._seeded
        obs, info = self.env.reset(seed=seed) if seeded else self.env.reset()
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
        packed = bytes(numcodecs.Zstd().decode(base64.b64decode(str(saved["data"]))))
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
