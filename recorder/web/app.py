"""The play server: the study page, one WebSocket and one process per participant, and the admin endpoints.

``GET /?PROLIFIC_PID=...`` serves the page (or the waiting page while every slot is taken). The page
opens ``/ws`` with the same query: the server hashes the id at once (the raw id goes no further),
sends the study's consent text, and only once it is accepted starts the participant's process
(``recorder.web.participant``); from then on it relays frames down and the page's messages up. A
participant's own messages can only act on their own session: quit, withdraw, answer.

Admin endpoints take ``Authorization: Bearer <token>``: ``POST /admin/withdraw`` with
``{"participant": "<hash>"}`` (or ``{"participant_id": "<raw id>"}``, hashed here) and
``GET /admin/sessions``. uvicorn runs without an access log: URLs carry raw participant ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import multiprocessing
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from gymrec.recorder.web.answers import save_answers
from gymrec.recorder.web.participant import ParticipantJob, run_participant
from gymrec.recorder.web.protocol import FRAME_TAG, JSON_TAG, browser_family, parse_page_message
from gymrec.shared.errors import GymrecError, ParticipantError
from gymrec.shared.spool.withdrawals import request_withdrawal
from gymrec.shared.study.participants import is_participant_hash, new_session_id, participant_hash
from gymrec.shared.study.study import Study

log = logging.getLogger(__name__)
STOP_WAIT_S = 30.0  # a participant's process seals its episode on quit; this long is plenty
WAITING_PAGE = ("<!doctype html><meta charset=utf-8><meta http-equiv=refresh content=5><title>Please wait</title>"
                "<p>Every place in this study is taken right now. This page tries again every few seconds: keep it open.</p>")


@dataclass(frozen=True)
class ServeConfig:
    study: Study
    spool: Path
    admin_token: str
    max_participants: int = 4
    spill_dir: Path | None = None
    seed: int | None = None


@dataclass
class Live:
    """A participant's running process, seen by the server."""

    participant: str
    process: Any  # multiprocessing.Process
    conn: Any  # the server's end of the pipe
    done: bool = False  # the process reported every game played
    withdrawing: bool = False  # the page asked to withdraw: its process is stopping for it


@dataclass
class Server:
    config: ServeConfig
    live: dict[str, Live] = field(default_factory=dict)  # by study_session

    @property
    def full(self) -> bool:
        return len(self.live) >= self.config.max_participants

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/", self.page), WebSocketRoute("/ws", self.play),
            Route("/admin/withdraw", self.admin_withdraw, methods=["POST"]),
            Route("/admin/sessions", self.admin_sessions),
        ], lifespan=self._lifespan)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        yield
        await asyncio.gather(*(self._stop(session) for session in list(self.live)))

    # --- participants ---------------------------------------------------------------------------

    async def page(self, request: Request) -> Response:
        if not request.query_params.get(self.config.study.participant_param):
            return HTMLResponse("<!doctype html><meta charset=utf-8><p>This link lacks your participant id: "
                                "open the link your study platform gave you.</p>", status_code=400)
        if self.full:
            return HTMLResponse(WAITING_PAGE, status_code=503)
        page = resources.files("gymrec.recorder.web").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(page, headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"})

    async def play(self, ws: WebSocket) -> None:
        origin = ws.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc != ws.headers.get("host"):
            await ws.close(code=1008)  # another site's page may not play (or withdraw) for a visitor
            return
        await ws.accept()
        study = self.config.study
        try:
            participant = participant_hash(study.salt, ws.query_params.get(study.participant_param, ""))
        except ParticipantError as e:
            await ws.send_json({"type": "error", "message": e.message})
            await ws.close()
            return
        await ws.send_json({"type": "study", "title": study.title, "consent": study.consent,
                            "instructions": study.instructions, "games": [g.env for g in study.games],
                            "questions": [q.__dict__ | {"choices": list(q.choices)} for q in study.questions]})
        try:
            if not await self._consented(ws):
                await ws.send_json({"type": "declined"})
                return
            if self.full:
                await ws.send_json({"type": "full"})
                return
            session = new_session_id()
            # No await between the check above and this: two consents cannot take one last place.
            client = browser_family(ws.headers.get("user-agent", ""))
            live = self.live[session] = self._start(participant, session, client)
            await ws.send_json({"type": "session", "session": session})
            await self._relay(ws, live, session)
        except WebSocketDisconnect:
            pass
        finally:
            with contextlib.suppress(RuntimeError):  # already closed by the page
                await ws.close()

    async def _consented(self, ws: WebSocket) -> bool:
        while True:
            message = parse_page_message(await ws.receive_text())
            if message is not None and message["type"] == "consent":
                return bool(message["accepted"])

    def _start(self, participant: str, session: str, client: str) -> Live:
        job = ParticipantJob(self.config.study, participant, session, client, self.config.spool,
                             self.config.spill_dir, self.config.seed)
        context = multiprocessing.get_context("spawn")
        ours, theirs = context.Pipe(duplex=True)
        process = context.Process(target=run_participant, args=(theirs, job), name=f"gymrec-participant-{session[:8]}")
        process.start()
        theirs.close()
        log.info("session %s started (process %s)", session, process.pid)
        return Live(participant, process, ours)

    async def _relay(self, ws: WebSocket, live: Live, session: str) -> None:
        loop = asyncio.get_running_loop()
        down: asyncio.Queue[bytes | None] = asyncio.Queue()

        def readable() -> None:
            try:
                while live.conn.poll():
                    down.put_nowait(live.conn.recv_bytes())
            except (EOFError, OSError):
                loop.remove_reader(live.conn.fileno())
                down.put_nowait(None)

        loop.add_reader(live.conn.fileno(), readable)
        upward = asyncio.create_task(self._upward(ws, live, session))
        try:
            while (data := await down.get()) is not None:
                if data[:1] == FRAME_TAG:
                    await ws.send_bytes(data[1:])
                elif data[:1] == JSON_TAG:
                    message = json.loads(data[1:])
                    live.done = live.done or message.get("type") == "done"
                    await ws.send_text(data[1:].decode("utf-8"))
            # The process ended: finished, or it stopped. Wait for the page's answers, if any.
            if live.done or live.withdrawing:
                await upward
        finally:
            with contextlib.suppress(OSError, ValueError):  # the pipe is closed already
                loop.remove_reader(live.conn.fileno())
            upward.cancel()
            await self._stop(session)

    async def _upward(self, ws: WebSocket, live: Live, session: str) -> None:
        """The page's messages: its own requests handled here, the rest down the pipe to its process."""
        try:
            while True:
                text = await ws.receive_text()
                message = parse_page_message(text)
                if message is None:
                    continue
                if message["type"] == "withdraw":
                    live.withdrawing = True
                    await self._stop(session)
                    await asyncio.to_thread(request_withdrawal, self.config.spool, live.participant)
                    await ws.send_json({"type": "withdrawn"})
                    return
                if message["type"] == "answers" and live.done:
                    await asyncio.to_thread(save_answers, self.config.spool, self.config.study, live.participant,
                                            session, message["answers"])
                    await ws.send_json({"type": "complete", "code": self.config.study.completion_code})
                    return
                with contextlib.suppress(OSError):
                    live.conn.send_bytes(text.encode("utf-8"))
        except WebSocketDisconnect:
            with contextlib.suppress(OSError):
                live.conn.send_bytes(b'{"type": "quit"}')

    async def _stop(self, session: str) -> None:
        """Ask a participant's process to quit (its episode is sealed) and wait for it to end."""
        live = self.live.pop(session, None)
        if live is None:
            return
        with contextlib.suppress(OSError):
            live.conn.send_bytes(b'{"type": "quit"}')
        await asyncio.to_thread(live.process.join, STOP_WAIT_S)
        if live.process.is_alive():  # its episode is left to recovery, as after a crash
            live.process.terminate()
        live.conn.close()
        log.info("session %s ended", session)

    # --- admin ----------------------------------------------------------------------------------

    def _authorised(self, request: Request) -> bool:
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {self.config.admin_token}".encode())

    async def admin_withdraw(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "admin token missing or wrong"}, status_code=401)
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return JSONResponse({"error": "send {\"participant\": HASH} or {\"participant_id\": ID}"}, status_code=400)
        try:
            who = body.get("participant")
            if not (isinstance(who, str) and is_participant_hash(who)):
                who = participant_hash(self.config.study.salt, str(body.get("participant_id", "")))
            for session in [s for s, live in self.live.items() if live.participant == who]:
                await self._stop(session)
            await asyncio.to_thread(request_withdrawal, self.config.spool, who)
        except GymrecError as e:
            return JSONResponse({"error": str(e)}, status_code=400)
        return JSONResponse({"participant": who, "withdrawn": True})

    async def admin_sessions(self, request: Request) -> Response:
        if not self._authorised(request):
            return JSONResponse({"error": "admin token missing or wrong"}, status_code=401)
        return JSONResponse({"study": self.config.study.id, "max_participants": self.config.max_participants,
                             "sessions": [{"session": s, "participant": live.participant}
                                          for s, live in self.live.items()]})
