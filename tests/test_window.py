"""The pygame window under SDL's dummy driver, and the fixed-rate clock with a fake time source."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pygame
import pytest

from gymrec.recorder.clock import FixedRateClock
from gymrec.recorder.window import GameWindow, HudState
from gymrec.shared.errors import DisplayError

HUD = HudState(fps_target=1000, step=0, episode_return=0.0, episode=1, recording=False, env_id="Test-v0")
FRAME = np.zeros((210, 160, 3), np.uint8)


def post(kind: int, key: int) -> None:
    pygame.event.post(pygame.event.Event(kind, key=key))


def screen() -> pygame.Surface:
    surface = pygame.display.get_surface()
    assert surface is not None
    return surface


def press(key: int) -> None:
    post(pygame.KEYDOWN, key)
    post(pygame.KEYUP, key)


@pytest.fixture
def headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    monkeypatch.setenv("SDL_AUDIODRIVER", "dummy")


@pytest.fixture
def open_window(headless: None) -> Iterator[Callable[..., GameWindow]]:
    windows: list[GameWindow] = []

    def make(clock: FixedRateClock | None = None, shape: tuple[int, ...] = FRAME.shape) -> GameWindow:
        window = GameWindow("gymrec test", fps=1000, scale=2, help_lines=["left: LEFT"], clock=clock)
        window.open(shape)
        pygame.event.clear()  # drop the window-shown/focus events SDL queues on open
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.close()


def test_keys_are_held_and_latched(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    post(pygame.KEYDOWN, pygame.K_LEFT)
    assert window.next_tick(FRAME, HUD).keys == {"left"}
    assert window.next_tick(FRAME, HUD).keys == {"left"}  # still held
    post(pygame.KEYUP, pygame.K_LEFT)
    press(pygame.K_SPACE)  # a tap entirely between two ticks
    tick = window.next_tick(FRAME, HUD)
    assert tick.keys == {"space"} and not tick.quit and not tick.discard
    assert window.next_tick(FRAME, HUD).keys == frozenset()


@pytest.mark.parametrize(
    "event", [pygame.event.Event(pygame.QUIT), pygame.event.Event(pygame.KEYDOWN, key=pygame.K_ESCAPE)]
)
def test_escape_or_window_close_quits(
    open_window: Callable[..., GameWindow], event: pygame.event.Event
) -> None:
    window = open_window()
    pygame.event.post(event)
    assert window.next_tick(FRAME, HUD).quit


def test_backspace_discards_without_touching_keys(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    post(pygame.KEYDOWN, pygame.K_RIGHT)
    press(pygame.K_BACKSPACE)
    tick = window.next_tick(FRAME, HUD)
    assert tick.discard and not tick.quit and tick.keys == {"right"}
    assert not window.next_tick(FRAME, HUD).discard


def test_p_then_p_pauses_then_resumes(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    press(pygame.K_p)
    press(pygame.K_p)
    tick = window.next_tick(FRAME, HUD)
    assert tick.paused_for > 0 and not tick.quit
    assert not window.paused


class _HookClock(FixedRateClock):
    """A real 1 kHz clock that runs a callback before every wait."""

    def __init__(self, hook: Callable[[], None]) -> None:
        super().__init__(1000)
        self.hook = hook

    def wait(self) -> float:
        self.hook()
        return super().wait()


def test_paused_tick_keeps_rendering_until_unpaused(open_window: Callable[..., GameWindow]) -> None:
    paused_waits: list[int] = []

    def hook() -> None:
        if not window.paused:
            return
        paused_waits.append(1)
        if len(paused_waits) == 2:
            press(pygame.K_SPACE)  # tapped during the pause: must not act afterwards
        if len(paused_waits) == 3:
            post(pygame.KEYDOWN, pygame.K_UP)  # pressed during the pause and still held
        if len(paused_waits) == 5:
            press(pygame.K_p)

    window = open_window(clock=_HookClock(hook))
    press(pygame.K_p)
    tick = window.next_tick(FRAME, HUD)
    assert len(paused_waits) == 5
    assert tick.keys == {"up"}
    assert tick.paused_for > 0


def test_quit_during_pause_quits(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    press(pygame.K_p)
    press(pygame.K_ESCAPE)
    tick = window.next_tick(FRAME, HUD)
    assert tick.quit and not window.paused


def test_f1_toggles_help_without_affecting_keys(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    frame = np.full((210, 160, 3), 200, np.uint8)
    window.next_tick(frame, HUD)
    corner = screen().get_at((5, 415))
    press(pygame.K_F1)
    post(pygame.KEYDOWN, pygame.K_LEFT)
    tick = window.next_tick(frame, HUD)
    assert window.help_visible and tick.keys == {"left"}
    assert screen().get_at((5, 415)) != corner  # the panel covers the bottom-left
    press(pygame.K_F1)
    assert window.next_tick(frame, HUD).keys == {"left"}
    assert not window.help_visible
    assert screen().get_at((5, 415)) == corner


@pytest.mark.parametrize(
    ("frame", "rgb"),
    [
        (np.full((210, 160, 3), (255, 0, 0), np.uint8), (255, 0, 0)),
        (np.full((210, 160, 1), 77, np.uint8), (77, 77, 77)),
        (np.full((210, 160), 33, np.uint8), (33, 33, 33)),
    ],
)
def test_frames_are_scaled_into_the_window(
    open_window: Callable[..., GameWindow], frame: np.ndarray, rgb: tuple[int, int, int]
) -> None:
    window = open_window(shape=frame.shape)
    window.next_tick(frame, HUD)
    assert screen().get_size() == (320, 420)
    assert tuple(screen().get_at((200, 300)))[:3] == rgb
    assert tuple(screen().get_at((319, 419)))[:3] == rgb


def test_frame_orientation_survives_the_transpose(open_window: Callable[..., GameWindow]) -> None:
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[200:, :, 1] = 255  # a green strip along the bottom
    open_window().next_tick(frame, HUD)
    assert tuple(screen().get_at((160, 415)))[:3] == (0, 255, 0)
    assert tuple(screen().get_at((160, 300)))[:3] == (0, 0, 0)


def _red_pixels_top_right(surface: pygame.Surface) -> int:
    area = pygame.surfarray.array3d(surface)[-80:, :30]
    return int(((area[..., 0] > 200) & (area[..., 1] < 80)).sum())


def test_rec_mark_only_while_recording(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    window.next_tick(FRAME, HUD)
    assert _red_pixels_top_right(screen()) == 0
    window.next_tick(FRAME, HudState(1000, 5, 1.5, 1, True, "Test-v0"))
    assert _red_pixels_top_right(screen()) > 20


def test_hud_text_is_not_rerendered_every_tick(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    window.next_tick(FRAME, HUD)
    first = window._hud
    for step in range(1, 5):
        window.next_tick(FRAME, HudState(1000, step, 0.0, 1, False, "Test-v0"))
    assert window._hud is first
    window.next_tick(FRAME, HudState(1000, 5, 0.0, 2, False, "Test-v0"))  # a new episode shows at once
    assert window._hud is not first


def test_no_display_is_a_one_line_display_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "no-such-driver")
    window = GameWindow("gymrec test", fps=60, scale=1, help_lines=[])
    with pytest.raises(DisplayError) as info:
        window.open((210, 160, 3))
    assert "\n" not in str(info.value) and "--headless" in str(info.value)
    window.close()


# --- the clock, with fake time ----------------------------------------------------------------


class FakeTime:
    """``now``/``sleep`` for FixedRateClock; ``work`` simulates the game loop's own time."""

    def __init__(self) -> None:
        self.t = 1000.0
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.t += seconds if seconds > 0 else 0.0001  # sleep(0) still takes a little time

    def work(self, seconds: float) -> None:
        self.t += seconds


def test_clock_is_deadline_based_and_does_not_drift() -> None:
    fake = FakeTime()
    clock = FixedRateClock(100, now=fake.now, sleep=fake.sleep, spin=0.001)
    assert clock.wait() == 0.0 and fake.sleeps == []
    start = fake.t
    for tick in range(1, 201):
        fake.work(0.003)
        late = clock.wait()
        assert 0 <= late < 0.0002
        assert abs(fake.t - (start + tick * 0.01)) < 0.0002  # on the grid, however long the work
    assert fake.sleeps[0] == pytest.approx(0.01 - 0.003 - 0.001)  # coarse sleep, then the spin
    assert 0 in fake.sleeps
    assert clock.measured_fps() == pytest.approx(100, rel=0.01)


def test_clock_catches_up_a_little_lateness_without_shifting_the_grid() -> None:
    fake = FakeTime()
    clock = FixedRateClock(100, now=fake.now, sleep=fake.sleep)
    clock.wait()
    start = fake.t
    fake.work(0.015)  # 1.5 periods: late, but not enough to resynchronise
    assert clock.wait() == pytest.approx(0.005)
    assert clock.wait() < 0.0002  # the next deadline is already close
    assert abs(fake.t - (start + 0.02)) < 0.0002
    assert clock.resyncs == 0


def test_clock_resynchronises_instead_of_bursting() -> None:
    fake = FakeTime()
    clock = FixedRateClock(100, now=fake.now, sleep=fake.sleep)
    clock.wait()
    fake.work(0.05)  # five periods: a stall
    assert clock.wait() == pytest.approx(0.04)
    assert clock.resyncs == 1
    resumed = fake.t
    clock.wait()
    assert fake.t - resumed == pytest.approx(0.01, abs=0.0002)  # a full period, not a burst of ticks


def test_clock_restart_and_bad_fps() -> None:
    fake = FakeTime()
    clock = FixedRateClock(50, now=fake.now, sleep=fake.sleep)
    clock.wait()
    fake.work(10.0)
    clock.restart()
    assert clock.wait() == 0.0 and clock.resyncs == 0
    assert clock.measured_fps() == 0.0
    with pytest.raises(ValueError):
        FixedRateClock(0)
