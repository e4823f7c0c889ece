"""A player made of pixels: it reads gymrec's game window through X and holds a key chosen by the frame.

Run as its own process (``python -m tests.pixel_bot --display :1 --window 0x... --scale 2 ...``) so
its timing is not disturbed by the test that started it. It polls the game area (the top of the
window: the frame scaled by ``--scale``, nearest neighbour) with XGetImage every ``--poll-ms``; taking
every scale-th pixel recovers the observation exactly. Whenever that frame changes it computes
``response(frame)``, a fixed function of the observation's pixels, and, if the response is a
different key from the one held, waits ``--reaction-ms`` and holds it (XTest: press the new key,
release the old one, then a round trip so the server has both). One JSON line per frame change goes
to ``--out``: when it was seen, when the press was through, the frame's hash, the chosen key and
whether the frame was still on screen right after the press.

If nothing moves for ``--stall-ms`` (a game waiting for FIRE, the start gate, the end-of-episode
summary) it taps ``--nudge`` (press, release after another stall): logged with ``nudge: true``, no
response to a frame. The reaction delay is ``--reaction-ms`` plus up to ``--jitter-ms`` chosen by the
frame's hash.
Times are ``time.monotonic_ns()``; CLOCK_MONOTONIC is system-wide, so they compare with the
recorder's ``shown_ns``/``decided_ns`` and input log.
"""

from __future__ import annotations

import argparse
import json
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from Xlib import XK, X, display
from Xlib.error import ConnectionClosedError, XError
from Xlib.ext import xtest

from gymrec.recorder.statusbar import BAR_HEIGHT

NO_KEY = "-"  # in --keys: the response "hold nothing"


def as_rgb(frame: np.ndarray) -> np.ndarray:
    """An observation as gymrec's window draws it: H×W×3 (grey broadcast, alpha dropped), C-ordered."""
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] == 1:
        frame = np.broadcast_to(frame, (*frame.shape[:2], 3))
    return np.ascontiguousarray(frame[:, :, :3], dtype=np.uint8)


def frame_hash(rgb: np.ndarray) -> int:
    return zlib.crc32(rgb.tobytes())


def response(rgb: np.ndarray, choices: int) -> int:
    """The bot's policy: which of ``choices`` keys a frame calls for (crc32 of its RGB bytes, mod K)."""
    return frame_hash(rgb) % choices


@dataclass(frozen=True)
class BotConfig:
    display: str
    window: int
    scale: int
    keys: tuple[str, ...]  # X keysym names, NO_KEY for none; index = response
    nudge: str
    reaction_s: float
    jitter_s: float = 0.0  # added to the reaction, spread over [0, jitter) by the frame's hash
    poll_s: float = 0.001
    stall_s: float = 0.5
    timeout_s: float = 120.0


class PixelBot:
    def __init__(self, config: BotConfig) -> None:
        self.config = config
        self.display = display.Display(config.display)
        self.window = self.display.create_resource_object("window", config.window)
        geometry = self.window.get_geometry()
        self.width = geometry.width
        self.height = geometry.height - BAR_HEIGHT  # the game area only: the status bar is below it
        codes = {name: self.display.keysym_to_keycode(XK.string_to_keysym(name))
                 for name in {*config.keys, config.nudge} - {NO_KEY}}
        missing = [name for name, code in codes.items() if not code]
        if missing:
            raise SystemExit(f"pixel_bot: no keycode for {missing}")
        self.codes = codes
        self.held = NO_KEY
        self.log: list[dict[str, Any]] = []
        self.polls = 0
        self.poll_ns = 0

    def grab(self) -> bytes:
        """The game area's raw pixels (raises XError once the window is gone)."""
        start = time.monotonic_ns()
        image = self.window.get_image(0, 0, self.width, self.height, X.ZPixmap, 0xFFFFFFFF)
        self.polls += 1
        self.poll_ns += time.monotonic_ns() - start
        return bytes(image.data)

    def observation(self, raw: bytes) -> np.ndarray:
        """Every scale-th pixel of the game area: the observation (Xvfb depth 24 is BGRX in memory)."""
        s = self.config.scale
        pixels = np.frombuffer(raw, np.uint8).reshape(self.height, self.width, 4)
        return as_rgb(pixels[::s, ::s, 2::-1])

    def hold(self, key: str) -> int:
        """Press ``key``, release the held one; the monotonic ns once the server has both."""
        if key != NO_KEY:
            xtest.fake_input(self.display, X.KeyPress, self.codes[key])
        if self.held != NO_KEY:
            xtest.fake_input(self.display, X.KeyRelease, self.codes[self.held])
        self.display.sync()
        self.held = key
        return time.monotonic_ns()

    def run(self) -> None:
        config = self.config
        end = time.monotonic() + config.timeout_s
        seen_raw = b""
        last_change = time.monotonic_ns()
        previous_poll = last_change
        try:
            while time.monotonic() < end:
                polled = time.monotonic_ns()
                raw = self.grab()
                seen = time.monotonic_ns()
                if raw != seen_raw:
                    seen_raw, last_change = raw, seen
                    self.respond(raw, seen, previous_poll)
                elif seen - last_change > config.stall_s * 1e9:
                    # Tap the nudge key: press it, and release it after another stall (Breakout serves
                    # on a press, not while FIRE is held).
                    key = NO_KEY if self.held == config.nudge else config.nudge
                    self.log.append({"seen_ns": seen, "nudge": True, "key": key, "press_ns": self.hold(key)})
                    last_change = seen
                previous_poll = polled
                time.sleep(max(0.0, config.poll_s - (time.monotonic_ns() - polled) / 1e9))
        except (XError, ConnectionClosedError):
            pass  # the window closed: gymrec-play is done
        finally:
            if self.held != NO_KEY:
                try:
                    self.hold(NO_KEY)
                except (XError, ConnectionClosedError):
                    pass

    def respond(self, raw: bytes, seen: int, previous_poll: int) -> None:
        config = self.config
        rgb = self.observation(raw)
        digest = frame_hash(rgb)
        key = config.keys[digest % len(config.keys)]
        entry: dict[str, Any] = {"seen_ns": seen, "previous_poll_ns": previous_poll, "hash": digest, "key": key,
                                 "press_ns": None, "in_time": None}
        self.log.append(entry)
        if key == self.held:
            return
        # A fixed delay would land every press at the same phase of the recorder's 4 ms input pump;
        # a person's reaction times vary, and so does the bot's (deterministically, by the frame).
        jitter = (digest >> 8) % 1000 / 1000 * config.jitter_s
        due = seen + int((config.reaction_s + jitter) * 1e9)
        while (left := due - time.monotonic_ns()) > 0:
            time.sleep(left / 1e9)
        entry["press_ns"] = self.hold(key)
        entry["in_time"] = self.grab() == raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--display", required=True)
    parser.add_argument("--window", required=True, help="X window id (decimal or 0x hex)")
    parser.add_argument("--scale", type=int, required=True)
    parser.add_argument("--keys", required=True, help=f"comma-separated X keysyms, {NO_KEY} for no key")
    parser.add_argument("--nudge", required=True, help="the key held when nothing moves")
    parser.add_argument("--reaction-ms", type=float, default=0.0)
    parser.add_argument("--jitter-ms", type=float, default=0.0)
    parser.add_argument("--poll-ms", type=float, default=1.0)
    parser.add_argument("--stall-ms", type=float, default=500.0)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    config = BotConfig(args.display, int(args.window, 0), args.scale, tuple(args.keys.split(",")), args.nudge,
                       args.reaction_ms / 1000, args.jitter_ms / 1000, args.poll_ms / 1000, args.stall_ms / 1000, args.timeout)
    bot = PixelBot(config)
    bot.run()
    summary = {"summary": True, "polls": bot.polls, "mean_poll_ms": bot.poll_ns / max(1, bot.polls) / 1e6}
    args.out.write_text("".join(json.dumps(entry) + "\n" for entry in [*bot.log, summary]))


if __name__ == "__main__":
    main()
