"""Keymaps: loading and validating the TOML, and resolving held keys against real envs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gymnasium
import numpy as np
import pytest

from gymrec.shared.errors import KeymapError
from gymrec.shared.keymaps.keymap import active_bindings, build_resolver, load_keymap, parse_key
from gymrec.shared.keymaps.keymap_parse import published_source


def held(*keys: str) -> frozenset[str]:
    return frozenset(keys)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "keys.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- loading ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "name"), [("ale", "atari"), ("vizdoom", "vizdoom"), ("retro", "retro")])
def test_builtin_keymaps_load_and_serialise(backend: str, name: str) -> None:
    keymap = load_keymap(backend)
    assert keymap.backend == backend
    assert keymap.source == f"builtin:{name}"
    data = json.loads(json.dumps(keymap.to_dict()))
    assert data["backend"] == backend and data["source"] == keymap.source
    assert data["sections"]


def test_retro_builtin_covers_the_required_consoles() -> None:
    assert {"Genesis", "Nes", "Snes", "Atari2600"} <= set(load_keymap("retro").sections)


def test_user_file_replaces_the_builtin(tmp_path: Path) -> None:
    path = write(tmp_path, '[bindings]\nw = "UP"\n')
    keymap = load_keymap("ale", path)
    # Published with every episode: the file's name and content hash, never its directory.
    assert keymap.source == published_source(path, path.read_text()) and str(path.parent) not in keymap.source
    assert keymap.source.startswith(path.name + " sha256:")
    assert keymap.to_dict()["sections"] == {"bindings": {"w": ["UP"]}}


def test_key_names_are_canonicalised() -> None:
    chord = parse_key("Alt+Left", "bindings", "test")
    assert (chord.key, chord.modifiers, chord.text) == ("left", {"alt"}, "alt+left")
    assert parse_key("LEFT SHIFT", "bindings", "test").key == "left shift"
    assert parse_key("ctrl++", "bindings", "test").key == "+"


@pytest.mark.parametrize(
    ("backend", "text", "needles"),
    [
        ("ale", "[bindings\nup = 'UP'", ["invalid TOML"]),
        ("ale", "[bindings]\nfoo = 'UP'", ["unknown key 'foo'", "[bindings]", "pygame key names"]),
        ("ale", "[bindings]\nup = 'JUMP'", ["unknown Atari action 'JUMP'", "'up'", "UPRIGHTFIRE"]),
        ("ale", "[bindings]\nup = ['UP', 'DOWN']", ["must map to a name"]),
        ("ale", "[bindings]\np = 'FIRE'", ["reserved", "'p'"]),
        ("ale", "[bindings]\nup = 'UP'\nUp = 'DOWN'", ["bound twice"]),
        ("ale", "[bindingz]\nup = 'UP'", ["unknown table [bindingz]"]),
        ("vizdoom", "[bindings]\nup = 'WALK'", ["unknown VizDoom button 'WALK'", "'up'"]),
        ("vizdoom", "[bindings]\nleft = 'TURN_LEFT_RIGHT_DELTA'\n[deltas]\nTURN_LEFT_RIGHT_DELTA = 5",
         ["needs a direction", "'+TURN_LEFT_RIGHT_DELTA'"]),
        ("vizdoom", "[bindings]\nleft = '-TURN_LEFT_RIGHT_DELTA'", ["no magnitude for TURN_LEFT_RIGHT_DELTA"]),
        ("vizdoom", "[bindings]\nleft = '+ATTACK'", ["only delta buttons take a sign"]),
        ("vizdoom", "[bindings]\n[deltas]\nATTACK = 5", ["'ATTACK' in [deltas] is not a delta button"]),
        ("vizdoom", "[bindings]\n[deltas]\nTURN_LEFT_RIGHT_DELTA = -1", ["must be a positive number"]),
        ("retro", "[Genesis]\ntab = 'SELECT'", ["unknown Genesis button 'SELECT'", "MODE"]),
        ("retro", "[Dreamcast]\nz = 'A'", ["unknown console table [Dreamcast]", "Genesis"]),
    ],
)  # fmt: skip
def test_bad_keymaps_fail_with_one_line_naming_entry_and_fix(
    tmp_path: Path, backend: str, text: str, needles: list[str]
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(KeymapError) as info:
        load_keymap(backend, path)
    message = str(info.value)
    assert "\n" not in message
    assert str(path) in message
    assert info.value.hint  # the "how to fix it" half
    for needle in needles:
        assert needle in message


def test_unreadable_file_and_unknown_backend(tmp_path: Path) -> None:
    with pytest.raises(KeymapError, match="cannot read it"):
        load_keymap("ale", tmp_path / "missing.toml")
    with pytest.raises(KeymapError, match="unknown keymap backend 'snes'"):
        load_keymap("snes")


def test_chords_shadow_plain_keys_and_aliases_match_either_side(tmp_path: Path) -> None:
    keymap = load_keymap(
        "ale", write(tmp_path, '[bindings]\nleft = "LEFT"\n"alt+left" = "RIGHT"\nshift = "FIRE"\n')
    )
    bindings = keymap.sections["bindings"]
    assert active_bindings(bindings, held("left")) == [0]
    assert active_bindings(bindings, held("left", "right alt")) == [1]
    assert active_bindings(bindings, held("right shift")) == [2]
    assert active_bindings(bindings, held("left alt")) == []


# --- Atari ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ale_make() -> Iterator[Any]:
    import ale_py

    gymnasium.register_envs(ale_py)
    envs: list[gymnasium.Env] = []

    def make(env_id: str, **kwargs: Any) -> gymnasium.Env:
        envs.append(gymnasium.make(env_id, **kwargs))
        return envs[-1]

    yield make
    for env in envs:
        env.close()


def meaning(env: gymnasium.Env, resolver: Any, *keys: str) -> str:
    action = resolver(held(*keys))
    assert type(action) is int and env.action_space.contains(action)
    return str(env.unwrapped.get_action_meanings()[action])  # type: ignore[attr-defined]


def test_atari_full_action_set_combines_in_canonical_order(ale_make: Any) -> None:
    env = ale_make("ALE/Breakout-v5", full_action_space=True)
    resolve = build_resolver(load_keymap("ale"), env)
    assert meaning(env, resolve, "up", "right", "space") == "UPRIGHTFIRE"
    assert meaning(env, resolve, "down", "left") == "DOWNLEFT"
    assert meaning(env, resolve, "up", "down", "left") == "LEFT"  # opposites cancel
    assert meaning(env, resolve, "left", "right", "space") == "FIRE"
    assert meaning(env, resolve) == "NOOP"
    assert resolve.noop == 0


def test_atari_missing_combinations_fall_back_to_the_nearest_subset(ale_make: Any) -> None:
    breakout = ale_make("BreakoutNoFrameskip-v4")  # NOOP FIRE RIGHT LEFT
    resolve = build_resolver(load_keymap("ale"), breakout)
    assert meaning(breakout, resolve, "right", "space") == "RIGHT"  # ties keep direction over FIRE
    assert meaning(breakout, resolve, "up", "space") == "FIRE"
    assert meaning(breakout, resolve, "up") == "NOOP"
    described = resolve.describe()
    keyboard = {k: v for k, v in described["keys"].items() if not k.startswith("pad ")}
    assert keyboard == {"left": "LEFT", "right": "RIGHT", "space": "FIRE"}
    assert {k: v for k, v in described["unavailable"].items() if not k.startswith("pad ")} == {"up": "UP", "down": "DOWN"}
    assert described["keys"]["pad a"] == "FIRE" and described["unavailable"]["pad up"] == "UP"
    json.dumps(described)

    pong = ale_make("ALE/Pong-v5")  # NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE
    resolve = build_resolver(load_keymap("ale"), pong)
    assert meaning(pong, resolve, "up", "right", "space") == "RIGHTFIRE"  # drops one part, not two


class _FakeAle(gymnasium.Env[np.ndarray, np.int64]):
    """Only what the resolver reads: a Discrete space and the action meanings."""

    def __init__(self, meanings: list[str]) -> None:
        self.meanings = meanings
        self.action_space = gymnasium.spaces.Discrete(len(meanings))
        self.observation_space = gymnasium.spaces.Box(0, 255, (1,), np.uint8)

    def get_action_meanings(self) -> list[str]:
        return self.meanings


def test_atari_tie_break_keeps_vertical_then_horizontal_then_fire() -> None:
    env = _FakeAle(["NOOP", "RIGHT", "UP", "FIRE"])
    resolve = build_resolver(load_keymap("ale"), env)
    assert resolve(held("up", "right")) == 2
    assert resolve(held("right", "space")) == 1
    assert resolve(held("down")) == 0


# --- VizDoom ----------------------------------------------------------------------------------


@pytest.fixture
def doom(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Any]:
    monkeypatch.chdir(tmp_path)  # vizdoom writes _vizdoom.ini to the CWD
    from vizdoom import gymnasium_wrapper  # noqa: F401  (registers the envs)

    envs: list[gymnasium.Env] = []

    def make(env_id: str, **kwargs: Any) -> tuple[gymnasium.Env, Any]:
        envs.append(gymnasium.make(env_id, **kwargs))
        return envs[-1], build_resolver(load_keymap("vizdoom"), envs[-1])

    yield make
    for env in envs:
        env.close()


def pressed(env: gymnasium.Env, binary: Any) -> set[str]:
    """Names of the binary buttons an action presses."""
    unwrapped: Any = env.unwrapped
    names = [b.name for b in unwrapped.game.get_available_buttons()][unwrapped.num_delta_buttons :]
    vector = unwrapped.button_map[binary] if isinstance(binary, int) else binary
    return {name for name, on in zip(names, vector, strict=True) if on}


def test_vizdoom_discrete_picks_the_combo_or_the_nearest_subset(doom: Any) -> None:
    env, resolve = doom("VizdoomBasic-v1")  # MOVE_LEFT MOVE_RIGHT ATTACK, one at a time
    for keys, expected in [
        ((), set()),
        (("left ctrl",), {"ATTACK"}),
        (("left",), {"MOVE_LEFT"}),  # no turning in Basic: the arrows strafe
        (("left alt", "right"), {"MOVE_RIGHT"}),
        (("left ctrl", "left"), {"ATTACK"}),  # one button at most: the earlier binding wins
        (("left", "right"), set()),  # opposites cancel
        (("up", "1"), set()),  # buttons Basic lacks do nothing
    ]:
        action = resolve(held(*keys))
        assert type(action) is int and env.action_space.contains(action)
        assert pressed(env, action) == expected, keys
    assert "up" in resolve.describe()["unavailable"]


@pytest.mark.parametrize(
    "kwargs", [{"max_buttons_pressed": 0}, {"max_buttons_pressed": 0, "use_multi_binary_action_space": False}]
)
def test_vizdoom_vectors_press_every_held_button(doom: Any, kwargs: dict[str, Any]) -> None:
    env, resolve = doom("VizdoomDeadlyCorridor-v1", **kwargs)
    action = resolve(held("up", "left", "left ctrl"))
    assert isinstance(action, np.ndarray) and env.action_space.contains(action)
    assert pressed(env, action) == {"MOVE_FORWARD", "TURN_LEFT", "ATTACK"}
    assert pressed(env, resolve(held("left alt", "left"))) == {"MOVE_LEFT"}


def test_vizdoom_deathmatch_dict_turns_with_deltas_while_running(doom: Any) -> None:
    env, resolve = doom("VizdoomDeathmatch-v1")  # Dict(binary=Discrete(18), continuous=Box(3))
    action = resolve(held("up", "left"))
    assert env.action_space.contains(action)
    assert pressed(env, action["binary"]) == {"MOVE_FORWARD"}
    np.testing.assert_array_equal(action["continuous"], [0.0, -5.0, 0.0])  # LOOK, TURN, MOVE_LEFT_RIGHT
    strafe = resolve(held("right alt", "right"))
    np.testing.assert_array_equal(strafe["continuous"], [0.0, 0.0, 24.0])  # the chord shadows turning
    assert pressed(env, resolve(held("2"))["binary"]) == {"SELECT_WEAPON2"}
    assert resolve.describe()["keys"]["left"] == "TURN_LEFT_RIGHT_DELTA -5"
    env.reset(seed=0)
    env.step(action)  # the env itself accepts it


def test_vizdoom_box_only_when_a_scenario_has_just_delta_buttons(doom: Any) -> None:
    env, resolve = doom("VizdoomBasic-v1", available_buttons="{TURN_LEFT_RIGHT_DELTA MOVE_LEFT_RIGHT_DELTA}")
    assert isinstance(env.action_space, gymnasium.spaces.Box)
    action = resolve(held("left"))
    assert env.action_space.contains(action)
    np.testing.assert_array_equal(action, [-5.0, 0.0])
    np.testing.assert_array_equal(resolve(held("left alt", "right")), [0.0, 24.0])
    np.testing.assert_array_equal(resolve.noop, [0.0, 0.0])


# --- stable-retro -----------------------------------------------------------------------------


def test_retro_genesis_multibinary(tmp_path: Path) -> None:
    import stable_retro

    env = stable_retro.make("Airstriker-Genesis-v0", render_mode="rgb_array")
    try:
        resolve = build_resolver(load_keymap("retro"), env)
        buttons = env.unwrapped.buttons
        action = resolve(held("up", "z", "return"))
        assert env.action_space.contains(action)
        assert {buttons[i] for i in np.flatnonzero(action)} == {"UP", "A", "START"}
        assert {buttons[i] for i in np.flatnonzero(resolve(held("up", "down", "left")))} == {"LEFT"}
        assert not resolve.noop.any()
        assert resolve.describe()["keys"]["tab"] == "MODE"
        with pytest.raises(KeymapError, match=r"no \[Genesis\] table"):
            build_resolver(load_keymap("retro", write(tmp_path, '[nes]\nz = "B"\n')), env)
    finally:
        env.close()


def test_keymap_for_the_wrong_backend_is_rejected(tmp_path: Path) -> None:
    env = _FakeAle(["NOOP"])
    with pytest.raises(KeymapError, match="is not a VizDoom env"):
        build_resolver(load_keymap("vizdoom"), env)
    with pytest.raises(KeymapError, match="is not a stable-retro env"):
        build_resolver(load_keymap("retro", write(tmp_path, '[Genesis]\nz = "A"\n')), env)
