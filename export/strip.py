"""The status strip under a video frame: step, return so far and the action chosen on that frame.

It is drawn into its own rows below the game image, never over it, so the game pixels of a
lossless video stay exactly the recorded ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

STRIP_ROWS = 12  # PIL's built-in bitmap font is 11 px tall
TEXT = (235, 235, 235)
BACKGROUND = (24, 24, 24)


def _action_text(action: Any, meanings: tuple[str, ...] | None = None) -> str:
    if action is None:
        return "-"
    if isinstance(action, dict):
        return " ".join(f"{k}={_action_text(v, meanings if k == 'binary' else None)}" for k, v in action.items())
    values = np.asarray(action)
    if values.ndim == 0:
        index = int(values.item()) if values.dtype.kind in "iu" else -1
        return meanings[index] if meanings and 0 <= index < len(meanings) else str(values.item())
    if values.dtype.kind in "iub" and meanings and values.size == len(meanings):
        pressed = [name for name, on in zip(meanings, values.ravel(), strict=True) if on]
        return "+".join(pressed) or "none"  # the buttons held, by name
    if values.dtype.kind in "iub" and values.size <= 16:
        return "".join(str(int(v)) for v in values.ravel())  # MultiBinary without names: one digit a button
    return ",".join(f"{float(v):.2g}" for v in values.ravel())


def status_line(step: int, episode_return: float, action: Any, meanings: tuple[str, ...] | None = None) -> str:
    """``meanings``: the recorded action meanings (ALE's "LEFT", retro's and VizDoom's button names)."""
    return f"step {step}  ret {episode_return:g}  {_action_text(action, meanings)}"


def draw(width: int, scale: int, text: str) -> np.ndarray:
    """A (STRIP_ROWS * scale, width, 3) uint8 strip holding ``text`` (cut at the right edge)."""
    image = Image.new("RGB", (max(1, width // scale), STRIP_ROWS), BACKGROUND)
    ImageDraw.Draw(image).text((2, 0), text, fill=TEXT, font=ImageFont.load_default_imagefont())
    strip = np.asarray(image)
    if scale > 1:
        strip = strip.repeat(scale, axis=0).repeat(scale, axis=1)
    out = np.zeros((STRIP_ROWS * scale, width, 3), np.uint8)
    out[:, : min(width, strip.shape[1])] = strip[:, :width]
    return out
