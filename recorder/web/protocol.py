"""What the play page, the server and a participant's process say to each other, and how it is checked.

Between a participant's process and the server (a ``multiprocessing`` pipe), every message is bytes:
``J`` + JSON for the page, ``F`` + a frame for the page's canvas. The server forwards both as they
are and sends the page's own JSON messages back down the pipe; it never looks inside a frame.

A frame (``pack_frame``): a 12-byte little-endian header (step, width, height, kind) and the RGB
pixels, row by row: lossless, and the page draws them with ``putImageData``.

Everything the page sends is untrusted: ``parse_page_message`` accepts only the known message types
with the right field types, and ``step_keys`` only key names a keymap can bind (at most ``MAX_KEYS``);
the keymap's resolver then makes the action and the session checks it against the action space, as
it checks an agent's.
"""

from __future__ import annotations

import json
import math
import re
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import numpy as np

from gymrec.shared.keymaps.bindings import PAD_NAMES

JSON_TAG, FRAME_TAG = b"J", b"F"
FRAME_HEADER = struct.Struct("<iHHI")  # step (-1: not a step), width, height, kind
KIND_STEP, KIND_GATE, KIND_OVER = 0, 1, 2
MAX_KEYS = 16
MAX_MESSAGE_BYTES = 64 * 1024  # answers included; a frame never goes this way
# The page's key names are pygame's (the keymaps' language): letters, digits, arrows, modifiers, F-keys.
_KEY_NAME = re.compile(r"^(?:[a-z0-9]|f[1-9]|f1[0-2]|left|right|up|down|space|return|tab|"
                       r"(?:left|right) (?:shift|ctrl|alt)|[-=\[\];',./`\\])$")
# Field types of each message the page may send; anything else is dropped.
PAGE_MESSAGES: Mapping[str, Mapping[str, type | tuple[type, ...]]] = MappingProxyType({
    "consent": MappingProxyType({"accepted": bool}),
    "start": MappingProxyType({}),
    "shown": MappingProxyType({"t": int, "recv": (int, float), "shown": (int, float), "sent": (int, float)}),
    "act": MappingProxyType({"t": int, "keys": list, "decided": (int, float)}),
    "next": MappingProxyType({}),
    "quit": MappingProxyType({}),
    "withdraw": MappingProxyType({}),
    "answers": MappingProxyType({"answers": dict}),
})


def pack_json(message: Mapping[str, Any]) -> bytes:
    return JSON_TAG + json.dumps(message, allow_nan=False).encode("utf-8")


def pack_frame(step: int, frame: np.ndarray, kind: int = KIND_STEP) -> bytes:
    """A frame for the page: header then H×W×3 uint8 pixels (grayscale is widened, alpha dropped)."""
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] == 1:
        frame = np.broadcast_to(frame, (*frame.shape[:2], 3))
    rgb = np.ascontiguousarray(frame[:, :, :3], dtype=np.uint8)
    height, width = rgb.shape[:2]
    return FRAME_TAG + FRAME_HEADER.pack(step, width, height, kind) + rgb.tobytes()


def unpack_frame(data: bytes) -> tuple[int, int, np.ndarray]:
    """(step, kind, H×W×3 pixels) of a ``pack_frame`` message (tests and the bench read what the page gets)."""
    step, width, height, kind = FRAME_HEADER.unpack_from(data, 1)
    pixels = np.frombuffer(data, dtype=np.uint8, offset=1 + FRAME_HEADER.size).reshape(height, width, 3)
    return step, kind, pixels


def _fits(value: object, kind: type | tuple[type, ...]) -> bool:
    if isinstance(value, bool) and kind is not bool:
        return False  # JSON true is no number
    if isinstance(value, float) and not math.isfinite(value):
        return False
    return isinstance(value, kind)


def parse_page_message(text: str | bytes) -> dict[str, Any] | None:
    """The page's message as a dict of checked fields, or None (malformed, unknown, too big)."""
    if len(text) > MAX_MESSAGE_BYTES:
        return None
    try:
        message = json.loads(text)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(message, dict):
        return None
    fields = PAGE_MESSAGES.get(message.get("type"))  # type: ignore[arg-type]
    if fields is None or not all(_fits(message.get(name), kind) for name, kind in fields.items()):
        return None
    return message


def step_keys(raw: list[Any]) -> frozenset[str]:
    """The key and button names of an ``act`` message that a keymap could bind; the rest are dropped."""
    names = [k for k in raw[:MAX_KEYS] if isinstance(k, str)]
    return frozenset(k for k in names if k in PAD_NAMES or _KEY_NAME.match(k))


_FAMILIES = (("edg/", "edge"), ("opr/", "opera"), ("firefox/", "firefox"), ("chromium/", "chromium"),
             ("headlesschrome/", "chrome"), ("chrome/", "chrome"), ("version/", "safari"))


def browser_family(user_agent: str) -> str:
    """The browser's family and major version ("firefox 128"): enough to group data by client, far too
    little to single a participant out (the full User-Agent string is never stored)."""
    ua = user_agent.lower()
    for marker, family in _FAMILIES:
        at = ua.find(marker)
        if at >= 0:
            major = re.match(r"\d+", ua[at + len(marker):])
            return f"{family} {major.group(0)}" if major else family
    return "other"
