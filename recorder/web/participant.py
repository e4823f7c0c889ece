"""One participant's process: the study's games in order, each a recorder ``Session`` driven by the page.

The server starts this with ``multiprocessing`` (spawn) once the participant has accepted the
consent text: before that no env exists and nothing is written. Each game is what ``gymrec-play``
runs: the same env, keymap, ``Session``, writer process and spool, so episodes are sealed (or left
to crash recovery) exactly as a window's are. The pipe to the server is the page's only way in; if
it closes (the server died, the page was closed), the episode under way is sealed as quit.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gymrec.recorder.config import PlayConfig
from gymrec.recorder.interrupts import Interrupts
from gymrec.recorder.play_source import keymap_record
from gymrec.recorder.session import Session
from gymrec.recorder.web.controller import BrowserController, Channel
from gymrec.recorder.web.protocol import pack_json
from gymrec.shared.envs.backends import make_env
from gymrec.shared.errors import GymrecError
from gymrec.shared.keymaps.keymap import build_resolver, load_keymap
from gymrec.shared.study.study import Game, Study

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ParticipantJob:
    study: Study
    participant: str  # the salted hash (shared.study.participants), never the raw id
    session: str
    client_browser: str
    spool: Path
    spill_dir: Path | None = None
    seed: int | None = None

    def start_attrs(self) -> dict[str, Any]:
        return {"study": self.study.id, "participant": self.participant, "study_session": self.session,
                "client_browser": self.client_browser}


def play_game(job: ParticipantJob, game: Game, index: int, channel: Channel, interrupts: Interrupts) -> bool:
    """Play one game of the study; False if the participant left during it."""
    made = make_env(game.env, {})
    try:
        keymap = load_keymap(made.backend, None)
        resolver = build_resolver(keymap, made.env)
        controller = BrowserController(channel, resolver, keymap_record(keymap, resolver))
        fps = game.fps or made.native_fps
        config = PlayConfig(env_id=game.env, spool=job.spool, fps=game.fps, seed=job.seed, episodes=game.episodes,
                            max_steps=round(game.seconds * fps) if game.seconds else None,
                            spill_dir=job.spill_dir, start_attrs=job.start_attrs())
        controller.send({"type": "game", "index": index, "of": len(job.study.games), "env": game.env, "fps": fps,
                         "keys": resolver.describe()["keys"]})
        Session(config, made, controller, interrupts).run()
        return not controller.quit
    finally:
        made.env.close()


def run_participant(channel: Any, job: ParticipantJob) -> None:
    """The process's body (``multiprocessing`` target): every game, then ``done`` (or ``error``)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the server, which tells us through the pipe
    interrupts = Interrupts()
    signal.signal(signal.SIGTERM, interrupts.handler)  # stop like quit, at a step boundary
    try:
        for index, game in enumerate(job.study.games):
            if not play_game(job, game, index, channel, interrupts):
                return
        with contextlib.suppress(OSError):  # the server went away meanwhile: nothing is lost
            channel.send_bytes(pack_json({"type": "done"}))
    except KeyboardInterrupt:
        return
    except GymrecError as e:
        log.error("participant session %s: %s", job.session, e)
        with contextlib.suppress(OSError):
            channel.send_bytes(pack_json({"type": "error", "message": str(e)}))
    finally:
        channel.close()
