"""gymrec-serve's parts without a browser: the study file, pseudonyms, the page's messages, the clock,
the browser controller over a real pipe, answers, the index columns and the CLI's one-line errors."""

from __future__ import annotations

import multiprocessing
import socket
import subprocess
import sys
import threading
import tomllib
from pathlib import Path

import numpy as np
import pytest

from gymrec.recorder.choices import StepView
from gymrec.recorder.web.answers import clean_answers
from gymrec.recorder.web.controller import BrowserController
from gymrec.recorder.web.protocol import (
    KIND_STEP,
    MAX_KEYS,
    browser_family,
    pack_frame,
    parse_page_message,
    step_keys,
    unpack_frame,
)
from gymrec.recorder.web.timing import MS, ClockSync, EpisodeTiming
from gymrec.shared.errors import ParticipantError, StudyError
from gymrec.shared.spool.schema import EndReason
from gymrec.shared.study.participants import HASH_CHARS, is_participant_hash, participant_hash
from gymrec.shared.study.study import load_study, parse_study
from tests.serve_helpers import STUDY

BIN = Path(sys.executable).parent


def _study_text(**changes: str) -> str:
    text = STUDY.format(seconds=5)
    for old, new in changes.items():
        text = text.replace(old, new)
    return text


def test_a_study_file_reads_into_its_protocol(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(_study_text())
    study = load_study(path)
    assert (study.id, study.completion_code, study.participant_param) == ("pilot-1", "DONE-4242", "PROLIFIC_PID")
    assert [(g.env, g.episodes, g.seconds) for g in study.games] == [("ALE/Breakout-v5", 1, 5.0)]
    assert study.questions[0].choices == ("1", "2", "3") and study.publish_answers is False


@pytest.mark.parametrize(("change", "said"), [
    ({'consent = "I agree to take part."\n': ""}, "[study].consent is missing"),
    ({'salt = "test-salt-0123456789abcdef"': 'salt = "short"'}, "salt has 5 characters"),
    ({'id = "pilot-1"': 'id = "../x"'}, "must be letters"),
    ({"seconds = 5": "seconds = -1"}, "games[0].seconds is -1"),
    ({"episodes = 1": 'episodes = "one"'}, "episodes must be a int"),
    ({'kind = "choice"': 'kind = "slider"'}, "questions[0].kind is 'slider'"),
    ({"[[games]]": "[[nogames]]"}, "the study has no games"),
    ({"[study]": "[study"}, "is not valid TOML"),
])  # fmt: skip
def test_a_bad_study_file_is_one_line_naming_the_key(tmp_path: Path, change: dict[str, str], said: str) -> None:
    path = tmp_path / "s.toml"
    path.write_text(_study_text(**change))
    with pytest.raises(StudyError) as caught:
        load_study(path)
    assert said in str(caught.value) and "\n" not in str(caught.value)


def test_gymrec_serve_refuses_a_missing_study_in_one_line(tmp_path: Path) -> None:
    out = subprocess.run([str(BIN / "gymrec-serve"), str(tmp_path / "none.toml"), "--spool", str(tmp_path / "s")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "does not exist" in out.stderr
    assert not (tmp_path / "s").exists()


def test_gymrec_serve_refuses_a_taken_port_in_one_line(tmp_path: Path) -> None:
    study = tmp_path / "s.toml"
    study.write_text(_study_text())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        out = subprocess.run([str(BIN / "gymrec-serve"), str(study), "--port", port, "--spool", str(tmp_path / "s")],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and f"cannot listen on 127.0.0.1:{port}" in out.stderr


def test_participant_ids_become_salted_pseudonyms() -> None:
    a = participant_hash("salt-one-0123456789", "5f3c9e21aa")
    assert is_participant_hash(a) and len(a) == HASH_CHARS and "5f3c9e21aa" not in a
    assert a == participant_hash("salt-one-0123456789", "5f3c9e21aa")  # the same person, the same pseudonym
    assert a != participant_hash("salt-two-0123456789", "5f3c9e21aa")
    for bad in ("", "x" * 200, "a b", "<script>"):
        with pytest.raises(ParticipantError):
            participant_hash("salt-one-0123456789", bad)


def test_the_page_messages_are_checked_like_agent_actions() -> None:
    assert parse_page_message('{"type": "act", "t": 3, "keys": ["left"], "decided": 1.5}') is not None
    for bad in ('{"type": "act", "t": "3", "keys": [], "decided": 1}', '{"type": "act", "t": true, "keys": [], "decided": 1}',
                '{"type": "shown", "t": 1, "recv": NaN, "shown": 1, "sent": 1}', '{"type": "rm -rf"}', "[1]", "{",
                '{"type": "answers", "answers": {"a": "' + "x" * 70000 + '"}}'):  # fmt: skip
        assert parse_page_message(bad) is None, bad
    assert step_keys(["left", "pad a", "space", "Escape", "../x", 7, "left ctrl"]) == {"left", "pad a", "space", "left ctrl"}
    assert len(step_keys([chr(97 + i) for i in range(26)])) == MAX_KEYS


def test_frames_go_to_the_page_losslessly() -> None:
    frame = np.random.default_rng(1).integers(0, 256, (210, 160, 3), dtype=np.uint8)
    step, kind, pixels = unpack_frame(pack_frame(12, frame))
    assert (step, kind) == (12, KIND_STEP) and np.array_equal(pixels, frame)
    gray = frame[:, :, 0]
    assert np.array_equal(unpack_frame(pack_frame(0, gray))[2], np.repeat(gray[:, :, None], 3, axis=2))


def test_the_browser_clock_maps_onto_the_servers() -> None:
    sync = ClockSync()
    offset = 5_000 * MS  # the server's clock reads 5 s more than the page's
    # 2 ms each way, the page held the frame 1 ms; then a slower, lopsided exchange that must not win.
    rtt = sync.exchange(100 * MS + offset, 105 * MS + offset, recv_ms=102.0, sent_ms=103.0)
    assert rtt == 4 * MS and abs(sync.to_server_ns(110.0) - (110 * MS + offset)) < 1000
    assert sync.exchange(200 * MS + offset, 230 * MS + offset, recv_ms=225.0, sent_ms=226.0) == 29 * MS
    assert abs(sync.to_server_ns(110.0) - (110 * MS + offset)) < 1000


def test_episode_timing_figures() -> None:
    timing = EpisodeTiming(fps=50.0)
    for t in range(100):
        timing.step(rtt_ns=(3 if t < 99 else 40) * MS, shown_ms=1000 + 20.0 * t + (5 if t == 50 else 0), decided_ms=1015 + 20.0 * t)
    fields = timing.fields()
    assert fields["rtt_p50_ms"] == 3.0 and 3.0 < fields["rtt_p99_ms"] <= 40.0
    assert 4.0 <= fields["display_p99_error_ms"] <= 5.0
    assert fields["browser_timing"]["shown_us"][:2] == [0, 20000] and len(fields["browser_timing"]["rtt_us"]) == 100


def _page(conn: object, replies: list[bytes]) -> None:
    for reply in replies:
        conn.send_bytes(reply)  # type: ignore[attr-defined]


def test_the_controller_steps_only_on_this_frames_action_and_drops_the_rest() -> None:
    ours, page = multiprocessing.Pipe()
    controller = BrowserController(ours, lambda keys: sorted(keys), keymap=None)  # type: ignore[arg-type]
    view = StepView(np.zeros((4, 4, 3), np.uint8), 5, 0.0, 1, "Test-v0", 60.0)
    replies = [b'{"type": "act", "t": 4, "keys": ["right"], "decided": 1}',  # frame 4's, late: dropped
               b'{"type": "act", "t": 5, "keys": ["left", "bogus key"], "decided": 20}',  # before its ack: kept
               b'not json', b'{"type": "next"}', b'{"type": "shown", "t": 5, "recv": 10, "shown": 11, "sent": 12}']  # fmt: skip
    feeder = threading.Thread(target=_page, args=(page, replies))
    feeder.start()
    controller._timing = EpisodeTiming(fps=60.0)
    choice = controller.act(None, view)
    feeder.join()
    assert choice.action == ["left"] and choice.stop is None and controller.dropped == 3
    assert choice.decided_ns - choice.shown_ns == 9 * MS  # the page's 11 -> 20 ms, on the server's clock
    assert page.poll() and page.recv_bytes()[:1] == b"F"
    page.close()
    assert controller.act(None, view).stop == EndReason.QUIT and controller.quit  # the server went away
    ours.close()


def test_answers_keep_only_the_studys_questions(tmp_path: Path) -> None:
    study = parse_study(tomllib.loads(_study_text()), "s.toml")
    assert clean_answers(study, {"fun": "2", "extra": "x"}) == {"fun": "2"}
    assert clean_answers(study, {"fun": "9"}) == {"fun": ""}  # not one of the choices
    assert clean_answers(study, {}) == {"fun": ""}


def test_browser_family_is_coarse() -> None:
    ua = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.6778.85 Safari/537.36"
    assert browser_family(ua) == "chrome 131"
    assert browser_family("Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0") == "firefox 128"
    assert browser_family("curl/8") == "other"


def test_the_index_carries_the_study_columns() -> None:
    from gymrec.uploader.index_row import INDEX_FEATURES

    for column in ("study", "participant", "study_session", "client_browser", "client_input", "rtt_p50_ms", "rtt_p99_ms"):
        assert column in INDEX_FEATURES


def test_the_example_study_file_in_the_docs_loads() -> None:
    study = load_study(Path(__file__).resolve().parents[1] / "docs" / "study.example.toml")
    assert study.id == "breakout-pilot" and [g.env for g in study.games] == ["ALE/Breakout-v5", "ALE/Pong-v5"]
