"""Is there a screen a person can see? SDL's offscreen and dummy video drivers draw into memory only.

Human play into an invisible window records an idle game as "human" data, and ``--render`` into one
shows nobody anything, so both are refused up front (``require_display``) at the CLI edge, in one
line. SDL itself is asked only where a display could exist: probing it without one makes SDL print
its own complaints (``XDG_RUNTIME_DIR`` ...) and fall back to a driver the user never chose.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping

import pygame

from gymrec.shared.errors import DisplayError

NO_DISPLAY_DRIVERS = frozenset({"offscreen", "dummy", "evdev"})
DESKTOP_VARIABLES = ("DISPLAY", "WAYLAND_DISPLAY")


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """SDL writes its probing errors straight to file descriptor 2; the refusal says it in one line."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def display_driver() -> str:
    """The SDL video driver pygame gets in this process ("" when none works)."""
    try:
        with _quiet_stderr():
            pygame.display.init()
    except pygame.error:
        return ""
    return str(pygame.display.get_driver())


def _unix_desktop(environ: Mapping[str, str]) -> bool:
    """False where no X or Wayland display is named (Linux and the BSDs); macOS and Windows always have one."""
    if sys.platform == "darwin" or sys.platform.startswith("win"):
        return True
    return any(environ.get(name) for name in DESKTOP_VARIABLES)


def require_display(what: str, hint: str, environ: Mapping[str, str]) -> None:
    """Raise DisplayError naming ``what`` unless a window here is something a person can see."""
    chosen = environ.get("SDL_VIDEODRIVER", "")
    if chosen in NO_DISPLAY_DRIVERS:
        raise DisplayError(f"no display: SDL_VIDEODRIVER={chosen} shows nothing, so {what}",
                           f"unset SDL_VIDEODRIVER where a desktop is running; {hint}")
    where = "run it in a desktop session, where DISPLAY or WAYLAND_DISPLAY is set"
    if not chosen and not _unix_desktop(environ):
        raise DisplayError(f"no display: there is no desktop here, so {what}", f"{where}; {hint}")
    driver = display_driver()
    if driver and driver not in NO_DISPLAY_DRIVERS:
        return
    pygame.display.quit()
    raise DisplayError(f"no display: the desktop named by DISPLAY/WAYLAND_DISPLAY cannot be opened, so {what}",
                       f"{where}; {hint}")
