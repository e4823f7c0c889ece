"""Who plays a recording: a person at a window, an agent (in a window unless headless), or both.

Shared by ``gymrec-play`` (``recorder.cli``) and its worker processes (``recorder.workers``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gymrec.recorder.agents import Agent, load_agent
from gymrec.recorder.config import PlayConfig
from gymrec.recorder.controllers import ActionSource, AgentController, HumanController, TakeoverController
from gymrec.shared.errors import AgentFailedError

if TYPE_CHECKING:
    from gymrec.shared.keymaps.keymap import ActionResolver, Keymap


def _guarded(agent: Agent, name: str) -> Agent:
    """The agent, with whatever its own code raises made the agent's error rather than gymrec's."""

    def act(obs: Any) -> Any:
        try:
            return agent(obs)
        except Exception as e:  # foreign code: anything it raises is the agent's fault (tests/test_architecture.py)
            raise AgentFailedError(f"agent {name} raised {type(e).__name__}: {e}") from e

    return act


def action_source(config: PlayConfig, made: Any) -> ActionSource:
    """Who plays: a person at a window, an agent (in a window unless --headless), or both (--takeover).

    The window and the keymaps are imported here, not at the top, so headless agent runs never load pygame.
    """
    agent = None if config.human else _guarded(load_agent(config.agent, made.env.action_space, config.seed), config.agent)
    if config.headless:
        assert agent is not None  # main() refuses --headless for humans
        return AgentController(agent, config.agent)
    from gymrec.recorder.helppanel import sections as help_sections
    from gymrec.recorder.window import GameWindow
    from gymrec.shared.keymaps.keymap import build_resolver, load_keymap

    resolver = keymap_dict = None
    if config.human or config.takeover:
        keymap = load_keymap(made.backend, config.keymap_path)
        resolver = build_resolver(keymap, made.env)
        keymap_dict = keymap_record(keymap, resolver)
    fps = config.fps or made.native_fps
    described = resolver.describe() if resolver is not None else {"keys": {}, "unavailable": {}}
    window = GameWindow(title=f"gymrec - {made.env_id}", fps=fps, scale=config.scale,
                        help_lines=resolver.help_lines() if resolver is not None else [],
                        help_sections=help_sections(described["keys"], list(described["unavailable"]), config.takeover),
                        tag="STEP MODE" if config.step_mode else "", takeover=config.takeover)
    window.open(_frame_shape(made.env.observation_space))
    if resolver is None:
        assert agent is not None
        return AgentController(agent, config.agent, window)
    if agent is None:
        return HumanController(window, resolver, keymap_dict, step_mode=config.step_mode)
    return TakeoverController(window, resolver, keymap_dict, agent, config.agent)


def keymap_record(keymap: Keymap, resolver: ActionResolver) -> dict[str, Any]:
    """The keymap as stored with every episode, and so published: a user file is named by its file name
    and content hash (``Keymap.source``), never by its path."""
    return {"source": keymap.source, "bindings": keymap.to_dict(), "resolved": resolver.describe()}


def _frame_shape(space: Any) -> tuple[int, ...]:
    from gymrec.shared.spool.spaces import describe_space, image_key

    desc = describe_space(space)
    key = image_key(desc)
    leaf = desc["spaces"][key] if desc["type"] == "Dict" else desc
    return tuple(leaf["shape"])
