"""Is there a screen a person can see? SDL's offscreen and dummy video drivers draw into memory only.

Human play into an invisible window records an idle game as "human" data, and ``--render`` into one
shows nobody anything, so both are refused up front (``require_display``) at the CLI edge. The
decision is SDL's own: the driver it picks given DISPLAY, WAYLAND_DISPLAY and SDL_VIDEODRIVER.
"""

from __future__ import annotations

import pygame

from gymrec.shared.errors import DisplayError

NO_DISPLAY_DRIVERS = frozenset({"offscreen", "dummy", "evdev"})


def display_driver() -> str:
    """The SDL video driver pygame gets in this process ("" when none works)."""
    try:
        pygame.display.init()
    except pygame.error:
        return ""
    return str(pygame.display.get_driver())


def require_display(what: str, hint: str) -> None:
    """Raise DisplayError naming ``what`` unless SDL has a video driver that shows a window."""
    driver = display_driver()
    if driver and driver not in NO_DISPLAY_DRIVERS:
        return
    pygame.display.quit()
    shown = f"SDL's {driver} video driver shows nothing" if driver else "SDL found no video device"
    raise DisplayError(f"no display: {shown}, so {what}",
                       f"run it where DISPLAY or WAYLAND_DISPLAY is set; {hint}")
