"""The pygame window under SDL's dummy driver, and the fixed-rate clock with a fake time source."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pygame
import pytest

from gymrec.recorder.clock import FixedRateClock
from gymrec.recorder.controllers import EndChoice
from gymrec.recorder.window import BAR_HEIGHT, GameWindow, HudState
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

    def wait(self, not_before: float | None = None) -> float:
        self.hook()
        return super().wait(not_before)


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


def test_f1_opens_help_which_pauses_the_game(open_window: Callable[..., GameWindow]) -> None:
    seen: list[tuple[bool, bool]] = []

    def hook() -> None:
        if window.help_visible:
            seen.append((window.paused, window.help_visible))
            if len(seen) == 2:
                press(pygame.K_SPACE)  # pressed while reading the help: must not act
            if len(seen) == 3:
                press(pygame.K_F1)

    window = open_window(clock=_HookClock(hook))
    frame = np.full((210, 160, 3), 200, np.uint8)
    window.next_tick(frame, HUD)
    press(pygame.K_F1)
    post(pygame.KEYDOWN, pygame.K_LEFT)
    tick = window.next_tick(frame, HUD)
    assert seen == [(True, True)] * 3  # the game waited while the help was up
    assert tick.paused_for > 0 and tick.keys == {"left"} and not window.help_visible and not window.paused


def _game_pixels(window: GameWindow) -> np.ndarray:
    area = window.game_area
    return pygame.surfarray.array3d(screen()).swapaxes(0, 1)[area.top : area.bottom, area.left : area.right]


def _scaled(frame: np.ndarray, scale: int) -> np.ndarray:
    rgb = np.broadcast_to(frame.reshape(*frame.shape[:2], -1), (*frame.shape[:2], 3))
    return np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1)


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
    assert screen().get_size() == (320, 420 + BAR_HEIGHT)  # the status bar adds its height, nothing else
    assert window.game_area == pygame.Rect(0, 0, 320, 420)
    assert tuple(screen().get_at((200, 300)))[:3] == rgb
    assert tuple(screen().get_at((319, 419)))[:3] == rgb


def test_the_game_area_is_the_frame_pixel_for_pixel_while_recording(open_window: Callable[..., GameWindow]) -> None:
    frame = np.random.default_rng(0).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    window = open_window()
    window.next_tick(frame, HudState(1000, 5, 1.5, 1, True, "Test-v0"))
    assert np.array_equal(_game_pixels(window), _scaled(frame, 2))  # no HUD, no REC mark over the game


def test_frame_orientation_survives_the_transpose(open_window: Callable[..., GameWindow]) -> None:
    frame = np.zeros((210, 160, 3), np.uint8)
    frame[200:, :, 1] = 255  # a green strip along the bottom
    open_window().next_tick(frame, HUD)
    assert tuple(screen().get_at((160, 415)))[:3] == (0, 255, 0)
    assert tuple(screen().get_at((160, 300)))[:3] == (0, 0, 0)


def _bar_pixels(window: GameWindow) -> np.ndarray:
    return pygame.surfarray.array3d(screen()).swapaxes(0, 1)[window.game_area.bottom :]


def _red_in_bar(window: GameWindow) -> int:
    area = _bar_pixels(window)[:, -80:]
    return int(((area[..., 0] > 200) & (area[..., 1] < 80)).sum())


def _amber_in_bar(window: GameWindow) -> int:
    area = _bar_pixels(window)[:, -80:]
    return int(((area[..., 0] > 200) & (area[..., 1] > 140) & (area[..., 2] < 100)).sum())


def test_rec_mark_in_the_status_bar_only_while_recording(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    window.next_tick(FRAME, HUD)
    assert _red_in_bar(window) == 0
    window.next_tick(FRAME, HudState(1000, 5, 1.5, 1, True, "Test-v0"))
    assert _red_in_bar(window) > 20


def test_pause_dims_the_game_and_the_bar_says_paused(open_window: Callable[..., GameWindow]) -> None:
    frame = np.full((210, 160, 3), 200, np.uint8)
    looks: list[tuple[float, int, int]] = []

    def hook() -> None:
        if window.paused:
            looks.append((float(_game_pixels(window).mean()), _red_in_bar(window), _amber_in_bar(window)))
            if len(looks) == 2:
                press(pygame.K_p)

    window = open_window(clock=_HookClock(hook))
    recording = HudState(1000, 5, 1.5, 1, True, "Test-v0")
    window.next_tick(frame, recording)
    press(pygame.K_p)
    window.next_tick(frame, recording)
    mean, red, amber = looks[-1]
    assert mean < 150 and red == 0 and amber > 20  # dimmed; PAUSED (amber) instead of REC (red)
    assert np.array_equal(_game_pixels(window), _scaled(frame, 2)) and _red_in_bar(window) > 20


def test_the_bar_names_the_step_of_the_frame_shown_and_fps_is_refreshed_slowly(
        open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    window.next_tick(FRAME, HUD)
    assert window._bar is not None
    fps = window._bar._fps_text
    for step in range(1, 5):
        window.next_tick(FRAME, HudState(1000, step, 0.0, 1, False, "Test-v0"))
        shown = [text for text, _ in window._bar.placed]
        assert f"step {step}  return 0" in shown, shown  # the frame above is step ``step``: no lag
    assert window._bar._fps_text is fps  # the measured fps jitters: it is re-rendered at most every 0.25 s


class _CountingClock(FixedRateClock):
    """A real 1 kHz clock that posts scripted events before wait number N."""

    def __init__(self, script: dict[int, list[pygame.event.Event]]) -> None:
        super().__init__(1000)
        self.script = script
        self.waits = 0

    def wait(self, not_before: float | None = None) -> float:
        for event in self.script.get(self.waits, []):
            pygame.event.post(event)
        self.waits += 1
        return super().wait(not_before)


def down_event(key: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYDOWN, key=key)


def up_event(key: int) -> pygame.event.Event:
    return pygame.event.Event(pygame.KEYUP, key=key)


def test_start_gate_waits_for_a_game_key_and_ignores_commands(open_window: Callable[..., GameWindow]) -> None:
    clock = _CountingClock({2: [down_event(pygame.K_p), up_event(pygame.K_p)],
                            3: [down_event(pygame.K_F1), down_event(pygame.K_BACKSPACE)],
                            5: [down_event(pygame.K_SPACE)]})
    window = open_window(clock=clock)
    assert window.wait_for_start(FRAME, HUD, notice="episode 1 discarded")
    assert clock.waits == 6 and not window.paused and not window.help_visible
    tick = window.next_tick(FRAME, HUD)
    assert tick.keys == {"space"} and not tick.discard  # held from the gate on; the start press itself is spent


def test_start_gate_escape_quits(open_window: Callable[..., GameWindow]) -> None:
    window = open_window(clock=_CountingClock({1: [down_event(pygame.K_ESCAPE)]}))
    assert not window.wait_for_start(FRAME, HUD)


@pytest.mark.parametrize(("keys", "expected"), [
    ([pygame.K_n], EndChoice(discard=False, quit=False)),
    ([pygame.K_BACKSPACE, pygame.K_n], EndChoice(discard=True, quit=False)),
    ([pygame.K_BACKSPACE, pygame.K_ESCAPE], EndChoice(discard=True, quit=True)),
    ([pygame.K_ESCAPE], EndChoice(discard=False, quit=True)),
])
def test_episode_summary_choices(open_window: Callable[..., GameWindow], keys: list[int], expected: EndChoice) -> None:
    script = {2 + 2 * i: [down_event(key), up_event(key)] for i, key in enumerate(keys)}
    window = open_window(clock=_CountingClock(script))
    assert window.episode_over(FRAME, HUD, ["episode 1 over (terminated)", "return 3"]) == expected


def test_step_mode_waits_for_input(open_window: Callable[..., GameWindow]) -> None:
    clock = _CountingClock({4: [down_event(pygame.K_RIGHT), up_event(pygame.K_RIGHT)]})
    window = open_window(clock=clock)
    tick = window.next_tick(FRAME, HUD, wait_for_input=True)
    assert tick.keys == {"right"} and clock.waits == 5
    assert 0 < tick.shown_ns <= window.shown_ns  # the frame's first showing, not its last


def test_input_log_keeps_every_event_with_monotonic_times(open_window: Callable[..., GameWindow]) -> None:
    window = open_window()
    window.input_log.clear()
    press(pygame.K_LEFT)
    window.next_tick(FRAME, HUD)
    pygame.event.post(pygame.event.Event(pygame.CONTROLLERBUTTONDOWN, button=pygame.CONTROLLER_BUTTON_A, instance_id=3))
    pygame.event.post(pygame.event.Event(pygame.CONTROLLERAXISMOTION, axis=pygame.CONTROLLER_AXIS_LEFTX, value=-20000,
                                         instance_id=3))
    window.next_tick(FRAME, HUD)
    log = window.input_log.to_attrs(origin_ns=window.input_log.t_ns[0])
    assert [log["kinds"][k] for k in log["kind"]] == ["key_down", "key_up", "button_down", "axis"]
    assert log["code"][:2] == [pygame.K_LEFT, pygame.K_LEFT] and log["value"][2:] == [3, -20000]
    assert log["t_ns"] == sorted(log["t_ns"]) and log["t_ns"][0] == 0
    assert window.input_log.presses() == 2


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


def test_a_frame_drawn_late_still_stays_up_half_a_period() -> None:
    """``not_before``: the window's frame went up late (a slow step), so its period ends no earlier than
    half a period after the draw; the schedule shifts by the difference instead of squeezing frames."""
    fake = FakeTime()
    clock = FixedRateClock(100, now=fake.now, sleep=fake.sleep)
    clock.wait()
    fake.work(0.009)  # the step and the draw took 9 of the 10 ms: the frame goes up at 9 ms
    shown = fake.t
    assert clock.wait(not_before=shown + 0.005) < 0.0002  # not late: the period ends 5 ms after the draw
    assert fake.t - shown == pytest.approx(0.005, abs=0.0002)
    clock.wait()
    assert fake.t - shown == pytest.approx(0.015, abs=0.0002)  # the grid moved by the 4 ms it had to


def test_a_frame_goes_up_at_a_fixed_phase_however_long_its_step_took() -> None:
    fake = FakeTime()
    clock = FixedRateClock(100, now=fake.now, sleep=fake.sleep, spin=0.001)
    clock.wait()
    ticked = fake.t
    for step_took in (0.0005, 0.002):
        fake.work(step_took)
        clock.show_slot()
        assert fake.t - ticked == pytest.approx(0.0025, abs=0.0002)  # a quarter period after the tick
        clock.wait()
        ticked = fake.t
    fake.work(0.004)  # a step longer than the slot: drawn at once, not later
    clock.show_slot()
    assert fake.t - ticked == pytest.approx(0.004, abs=0.0002)
