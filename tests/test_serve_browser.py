"""gymrec-serve end to end: Debian's chromium plays a study with real key events (tests/serve_helpers.py).

One participant goes from consent to the completion code; the episode is sealed, pseudonymous, published,
replays identical, and each action answers the frame the page showed. Nothing is written before
consent, and a SIGKILL of the whole server tree loses nothing that recovery cannot seal.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.recovery import recover_orphans
from gymrec.shared.study.participants import participant_hash
from tests.serve_helpers import (
    ANSWER_ACTIONS,
    CHROMIUM,
    CHROMIUM_ARGS,
    RAW_PID,
    STRESS,
    TOKEN,
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
from tests.uploader_helpers import clean_env, local_index, run_uploader

SALT = "test-salt-0123456789abcdef"
PAD_LEFT = """() => {
  const pad = {mapping: "standard", axes: [0, 0], buttons: Array.from({length: 17}, (_, i) => ({pressed: i === 14}))};
  navigator.getGamepads = () => [pad];
  return window.gymrecState.current.t;
}"""
NO_PAD = "() => { navigator.getGamepads = () => []; return window.gymrecState.current.t; }"
# For 400 ms the network holds everything the page sends, then delivers it in order (as TCP would).
STALL = """() => {
  const send = WebSocket.prototype.send, held = [];
  WebSocket.prototype.send = function (data) { held.push([this, data]); };
  setTimeout(() => { WebSocket.prototype.send = send; for (const [ws, data] of held) send.call(ws, data); }, 400);
}"""


def _wait(page: object, script: str, timeout_s: float = 60) -> None:
    page.wait_for_function(script, timeout=timeout_s * 1000)  # type: ignore[attr-defined]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _post(url: str, body: dict[str, str], token: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


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
        log = bot_play(page, seconds=2)
        page.evaluate(STALL)  # the network holds the page's messages for 400 ms: the game must wait
        log.presses += bot_play(page, seconds=1).presses
        # A gamepad (the Gamepad API's standard mapping) holding d-pad left for half a second.
        pad_from = page.evaluate(PAD_LEFT)
        time.sleep(0.5)
        pad_to = page.evaluate(NO_PAD)
        log.presses += bot_play(page, seconds=20).presses
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
    assert (attrs.study, attrs.participant, attrs.client_input) == ("pilot-1", who, "gamepad+keyboard")
    assert attrs.client_browser is not None and attrs.client_browser.startswith("chrom")
    assert attrs.end_reason == "truncated" and attrs.length == 75  # 5 s at 15 Hz
    assert attrs.rtt_p50_ms is not None and 0 <= attrs.rtt_p50_ms <= (attrs.rtt_p99_ms or 0)
    timing = attrs.browser_timing
    assert timing is not None and len(timing["rtt_us"]) == len(timing["shown_us"]) == attrs.length
    # The stall held a frame up ~400 ms longer and the game waited: every step's frame was still shown.
    assert max(np.diff(timing["shown_us"])) >= 300_000
    times = episode.batch(0, episode.length).times
    assert np.all(times["decided_ns"] >= times["shown_ns"]) and np.all(np.diff(times["shown_ns"]) > 0)
    assert not raw_id_anywhere(server.spool, RAW_PID), "the raw participant id reached the spool"
    [answers] = (server.spool / "studies" / "pilot-1").iterdir()
    stored = json.loads(answers.read_text())
    assert stored["answers"] == {"fun": "3"} and stored["participant"] == who and stored["publish"] is False
    actions = episode.actions()
    assert pad_to - pad_from >= 3 and all(actions[t] == 3 for t in range(pad_from + 1, pad_to)), "d-pad left is LEFT"
    matching, counted = _pairing(episode, log.presses)
    print(f"pairing {matching}/{counted}, rtt p50 {attrs.rtt_p50_ms} ms p99 {attrs.rtt_p99_ms} ms, display p99 error {attrs.display_p99_error_ms} ms")
    assert counted >= 15, f"only {counted} steps where the bot answered a new frame in time"
    assert matching == counted, f"{matching}/{counted} actions answer the frame the page showed"
    replay = gymrec_replay(path)
    assert replay.returncode == 0 and "identical" in replay.stdout, replay.stdout + replay.stderr
    # Published: the uploader's dataset carries the study fields, never the raw id, and replays identical.
    dataset = tmp_path / "dataset"
    upload = run_uploader(["--once", "--spool", str(server.spool), "--local-dir", str(dataset)], tmp_path, clean_env())
    assert upload.returncode == 0, upload.stderr
    [row] = local_index(dataset).values()
    assert (row["study"], row["participant"], row["client_input"]) == ("pilot-1", who, "gamepad+keyboard")
    assert not raw_id_anywhere(dataset, RAW_PID), "the raw participant id reached the dataset"
    replay = gymrec_replay(dataset, "--all")
    assert replay.returncode == 0 and "identical" in replay.stdout, replay.stdout + replay.stderr


def test_declining_records_nothing_and_killing_the_server_loses_nothing(tmp_path: Path) -> None:
    need_browser()
    from websockets.exceptions import InvalidStatus
    from websockets.sync.client import connect
    from websockets.typing import Origin

    with serve(tmp_path, seconds=60, extra=("--max-participants", "1")) as server, browser_page() as page:
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
        assert _get(f"{server.url}/?PROLIFIC_PID=second-person")[0] == 503, "the one place is taken: a waiting page"
        assert _post(f"{server.url}/admin/withdraw", {"participant_id": "someone-else"}, "")[0] == 401
        assert _get(f"{server.url}/admin/sessions")[0] == 401, "only the admin lists sessions"
        ws_url = server.url.replace("http", "ws") + "/ws?PROLIFIC_PID=victim-1"
        with pytest.raises(InvalidStatus):  # another site's page may not open a session for its visitor
            connect(ws_url, origin=Origin("http://evil.example"), open_timeout=30).close()
        assert _post(f"{server.url}/admin/withdraw", {"participant_id": "someone-else"}, "wrong-token-0123456789")[0] == 401
        status, body = _post(f"{server.url}/admin/withdraw", {"participant_id": "someone-else"}, TOKEN)
        assert status == 200 and body["participant"] == participant_hash(SALT, "someone-else")
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


def test_a_participant_withdraws_with_the_button(tmp_path: Path) -> None:
    need_browser()
    with serve(tmp_path, seconds=60) as server, browser_page() as page:
        page.goto(f"{server.url}/?PROLIFIC_PID=withdrawer-7")
        _wait(page, "!document.getElementById('consent').classList.contains('hidden')")
        page.click("#accept")
        _wait(page, "window.gymrecState.mode === 'gate'")
        page.keyboard.press("Enter")
        _wait(page, "window.gymrecState.current && window.gymrecState.current.t >= 10")
        page.click("#withdraw")
        _wait(page, "document.getElementById('message').textContent.includes('withdrawn')")
        who = participant_hash(SALT, "withdrawer-7")
        assert (server.spool / "withdrawals" / f"{who}.json").is_file()
        assert not list((server.spool / "studies").glob(f"*/{who}.*")), "the participant's answers stayed"
        assert not episodes(server.spool, ".partial"), "the session ended (its episode sealed) before withdrawal"
        assert not episodes(server.spool), "the participant's episode is deleted from the spool"


@pytest.mark.skipif(not STRESS, reason="four browsers at once: make stress (GYMREC_STRESS=1) only")
def test_four_participants_at_once_each_get_their_own_sealed_episode(tmp_path: Path) -> None:
    need_browser()
    from playwright.sync_api import sync_playwright

    ids = [f"crowd-{i}" for i in range(4)]
    with serve(tmp_path, seconds=5, extra=("--max-participants", "4")) as server, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), headless=True)
        try:
            pages = [browser.new_context().new_page() for _ in ids]
            for raw, page in zip(ids, pages, strict=True):
                page.goto(f"{server.url}/?PROLIFIC_PID={raw}")
                page.click("#accept")
                _wait(page, "window.gymrecState.mode === 'gate'")
            assert _get(f"{server.url}/?PROLIFIC_PID=fifth")[0] == 503
            for page in pages:
                page.keyboard.press("Enter")
            for i in range(16):
                pages[i % 4].keyboard.press(("Space", "ArrowLeft", "ArrowRight", "Space")[i // 4])
                time.sleep(0.25)
            for page in pages:
                _wait(page, "window.gymrecState.mode === 'over'", timeout_s=120)
        finally:
            browser.close()
    found = [Episode(p) for p in episodes(server.spool)]
    assert sorted(e.attrs.participant or "" for e in found) == sorted(participant_hash(SALT, raw) for raw in ids)
    assert len({e.attrs.study_session for e in found}) == 4 and all(e.attrs.length == 75 for e in found)
    for e in found:
        replay = gymrec_replay(e.path)
        assert replay.returncode == 0 and "identical" in replay.stdout, replay.stdout + replay.stderr
