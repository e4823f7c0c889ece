"""gymrec-serve end to end: Debian's chromium plays a study with real key events (tests/serve_helpers.py).

One participant goes from consent to the completion code; the episode is sealed, pseudonymous,
replays identical, and each action answers the frame the page showed. Nothing is written before
consent, and a SIGKILL of the whole server tree loses nothing that recovery cannot seal.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.recovery import recover_orphans
from gymrec.shared.study.participants import participant_hash
from tests.serve_helpers import (
    ANSWER_ACTIONS,
    RAW_PID,
    bot_play,
    browser_page,
    episodes,
    fingerprint,
    gymrec_replay,
    need_browser,
    policy,
    raw_id_anywhere,
    serve,
    spool_files,
)

SALT = "test-salt-0123456789abcdef"


def _wait(page: object, script: str, timeout_s: float = 60) -> None:
    page.wait_for_function(script, timeout=timeout_s * 1000)  # type: ignore[attr-defined]


def _pairing(episode: Episode, presses: list[dict[str, object]]) -> tuple[int, int]:
    """(matching, counted) steps: action t is policy(frame t) where the bot answered frame t in time."""
    frames = episode.obs(episode.attrs.image_key, 0, episode.length)
    prints = [fingerprint(f) for f in frames]
    actions = episode.actions()
    in_time = {int(p["t"]): p for p in presses if p["changed"] and p["in_time"]}  # type: ignore[call-overload]
    late = {int(p["t"]) for p in presses if not p["in_time"]}  # type: ignore[call-overload]
    counted = matching = 0
    for t in range(1, episode.length):
        press = in_time.get(t)
        # A late press for frame t-1 (or a nudge) is latched into step t: such steps are not counted.
        if press is None or (t - 1) in late or press["h"] != prints[t] or policy(prints[t]) == policy(prints[t - 1]):
            continue
        counted += 1
        matching += int(actions[t] == ANSWER_ACTIONS[policy(prints[t])])
    return matching, counted


def test_consent_play_complete_replay_and_pairing(tmp_path: Path) -> None:
    need_browser()
    with serve(tmp_path, seconds=5) as server, browser_page() as page:
        page.goto(f"{server.url}/?PROLIFIC_PID={RAW_PID}")
        _wait(page, "!document.getElementById('consent').classList.contains('hidden')")
        time.sleep(0.5)
        assert not spool_files(server.spool / "studies") and not episodes(server.spool, ".partial")
        assert not episodes(server.spool), "nothing may be recorded before consent"
        page.click("#accept")
        _wait(page, "window.gymrecState.mode === 'gate'")
        page.keyboard.press("Enter")  # the start press starts; it acts on no step
        log = bot_play(page, seconds=20)
        _wait(page, "window.gymrecState.mode === 'over'")
        page.keyboard.press("Enter")
        _wait(page, "!document.getElementById('questions').classList.contains('hidden')")
        page.select_option("select[name=fun]", "3")
        page.click("#submit")
        _wait(page, "document.getElementById('code').textContent.length > 0")
        assert page.text_content("#code") == "DONE-4242"
    [path] = episodes(server.spool)
    episode = Episode(path)
    attrs = episode.attrs
    who = participant_hash(SALT, RAW_PID)
    assert (attrs.study, attrs.participant, attrs.client_input) == ("pilot-1", who, "keyboard")
    assert attrs.client_browser is not None and attrs.client_browser.startswith("chrom")
    assert attrs.end_reason == "truncated" and attrs.length == 75  # 5 s at 15 Hz
    assert attrs.rtt_p50_ms is not None and 0 <= attrs.rtt_p50_ms <= (attrs.rtt_p99_ms or 0)
    assert attrs.browser_timing is not None and len(attrs.browser_timing["rtt_us"]) == attrs.length
    times = episode.batch(0, episode.length).times
    assert np.all(times["decided_ns"] >= times["shown_ns"]) and np.all(np.diff(times["shown_ns"]) > 0)
    assert not raw_id_anywhere(server.spool, RAW_PID), "the raw participant id reached the spool"
    [answers] = (server.spool / "studies" / "pilot-1").iterdir()
    stored = json.loads(answers.read_text())
    assert stored["answers"] == {"fun": "3"} and stored["participant"] == who and stored["publish"] is False
    matching, counted = _pairing(episode, log.presses)
    print(f"pairing {matching}/{counted}, rtt p50 {attrs.rtt_p50_ms} ms p99 {attrs.rtt_p99_ms} ms, display p99 error {attrs.display_p99_error_ms} ms")
    assert counted >= 15, f"only {counted} steps where the bot answered a new frame in time"
    assert matching == counted, f"{matching}/{counted} actions answer the frame the page showed"
    replay = gymrec_replay(path)
    assert replay.returncode == 0 and "identical" in replay.stdout, replay.stdout + replay.stderr


def test_declining_records_nothing_and_killing_the_server_loses_nothing(tmp_path: Path) -> None:
    need_browser()
    with serve(tmp_path, seconds=60) as server, browser_page() as page:
        page.goto(f"{server.url}/?PROLIFIC_PID=decliner-1")
        _wait(page, "!document.getElementById('consent').classList.contains('hidden')")
        page.click("#decline")
        _wait(page, "document.getElementById('message').textContent.includes('nothing was recorded')")
        assert not spool_files(server.spool)
        page.goto(f"{server.url}/?PROLIFIC_PID={RAW_PID}")
        _wait(page, "!document.getElementById('consent').classList.contains('hidden')")
        page.click("#accept")
        _wait(page, "window.gymrecState.mode === 'gate'")
        page.keyboard.press("Enter")
        _wait(page, "window.gymrecState.current && window.gymrecState.current.t >= 40")
        page.keyboard.down("ArrowLeft")
        _wait(page, "window.gymrecState.current && window.gymrecState.current.t >= 70")
        server.kill_all()  # server, participant and writer processes, all at once
    assert episodes(server.spool, ".partial") and not episodes(server.spool)
    recover_orphans(server.spool)
    [path] = episodes(server.spool)
    attrs = Episode(path).attrs
    assert attrs.participant == participant_hash(SALT, RAW_PID) and attrs.study == "pilot-1"
    assert (attrs.length or 0) >= 64  # every committed chunk at least
    replay = gymrec_replay(path)
    assert replay.returncode == 0 and "identical" in replay.stdout, replay.stdout + replay.stderr
