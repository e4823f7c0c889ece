"""gymrec-view: the real Starlette app over a real spool and a real local dataset, the CLI, and a real browser."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from starlette.testclient import TestClient

from gymrec.replay.view.app import Viewer, ViewSettings, build_app
from gymrec.replay.view.catalog import Catalog
from gymrec.replay.view.cli import main as view_main
from gymrec.replay.view.cli import open_catalog
from gymrec.replay.view.verdicts import Verdicts
from gymrec.shared.hub.credentials import HubAccess
from gymrec.shared.spool.episode import Episode
from gymrec.shared.spool.sources import SpoolSource
from tests.replay_helpers import copy_episode, edit_attributes, record_episode, to_dataset, tree_digest

TOKEN = "test-admin-token-0123456789"
PARTICIPANT = "ab" * 8  # a salted hash, as gymrec-serve stores participants
BIN = Path(sys.executable).parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


@pytest.fixture(scope="module")
def sources(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A spool with a recorded episode and a branch of it played by someone else in a study; the same two
    episodes as a local dataset (whose index has no study columns: a dataset from before them)."""
    spool = tmp_path_factory.mktemp("spool")
    parent = record_episode(spool, "BreakoutNoFrameskip-v4", 90, 3)
    child = copy_episode(parent, spool)
    edit_attributes(child, ('"player": "test"', f'"player": "alice", "parent_episode_id": "{parent.stem}", '
                                                 f'"branch_step": 10, "study": "s1", "participant": "{PARTICIPANT}"'))  # fmt: skip
    dataset = to_dataset([parent, child], tmp_path_factory.mktemp("dataset") / "ds")
    return {"spool": spool, "dataset": dataset, "parent": parent, "child": child}


def client_for(catalog: Catalog, tmp_path: Path) -> Iterator[TestClient]:
    verdicts = Verdicts(tmp_path / "diffs")
    try:
        with TestClient(build_app(Viewer(catalog, verdicts), ViewSettings(TOKEN, "gymrec_view_test"))) as client:
            yield client
    finally:
        verdicts.close()


@pytest.fixture(params=["spool", "dataset"])
def client(request: pytest.FixtureRequest, sources: dict[str, Any], tmp_path: Path) -> Iterator[TestClient]:
    authed = client_for(open_catalog(str(sources[request.param]), HubAccess(None)), tmp_path)
    client = next(authed)
    client.headers["X-Gymrec-Token"] = TOKEN
    yield client
    next(authed, None)


def test_every_page_needs_the_token(sources: dict[str, Any], tmp_path: Path) -> None:
    for client in client_for(open_catalog(str(sources["spool"]), HubAccess(None)), tmp_path):
        eid = sources["parent"].stem
        for path in ("/episodes", "/api/episodes", f"/episodes/{eid}", f"/api/episodes/{eid}",
                     f"/api/episodes/{eid}/blocks/0.png", f"/api/episodes/{eid}/verdict"):  # fmt: skip
            refused = client.get(path)
            assert refused.status_code == 401 and "admin token" in refused.text, path
            assert client.get(path, params={"token": TOKEN[:-1] + "x"}).status_code == 401
            assert client.get(path, headers={"X-Gymrec-Token": "wrong" * 5}).status_code == 401
            assert client.get(path, headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200, path
        # The token in the URL once: a cookie, and the same page without the token in its address.
        first = client.get("/episodes", params={"token": TOKEN, "player": "alice"}, follow_redirects=False)
        assert first.status_code == 303 and first.headers["location"] == "/episodes?player=alice"
        assert "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
        listed = client.get("/api/episodes")
        assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
        assert listed.json()["total"] == 2


def test_filters_and_pages(client: TestClient, sources: dict[str, Any]) -> None:
    parent, child = sources["parent"].stem, sources["child"].stem
    every = client.get("/api/episodes").json()
    assert [r["episode_id"] for r in every["episodes"]] == sorted([parent, child])
    assert every["choices"]["player"] == ["alice", "test"] and every["choices"]["env_id"] == ["BreakoutNoFrameskip-v4"]
    assert {r["pairing"] for r in every["episodes"]} == {"on_screen"} and {r["collector"] for r in every["episodes"]} == {"random"}
    by_player = client.get("/api/episodes", params={"player": "alice"}).json()["episodes"]
    assert [(r["episode_id"], r["parent_episode_id"], r["branch_step"]) for r in by_player] == [(child, parent, 10)]
    assert client.get("/api/episodes", params={"env_id": "PongNoFrameskip-v4"}).json()["total"] == 0
    length = every["episodes"][0]["length"]
    assert client.get("/api/episodes", params={"min_length": length, "max_length": length}).json()["total"] == 2
    assert client.get("/api/episodes", params={"min_length": length + 1}).json()["total"] == 0
    second = client.get("/api/episodes", params={"limit": 1, "offset": 1}).json()
    assert second["total"] == 2 and [r["index"] for r in second["episodes"]] == [1]
    studies = client.get("/api/episodes", params={"study": "s1"}).json()
    if "study" in every["columns"]:  # the spool's attributes carry it; this dataset's index predates the column
        assert [r["participant"] for r in studies["episodes"]] == [PARTICIPANT]
    else:
        assert studies["total"] == 0 and "study" not in every["choices"]
    bad = client.get("/api/episodes", params={"colour": "red"})
    assert bad.status_code == 400 and "unknown filter 'colour'" in bad.json()["error"]
    assert client.get("/api/episodes", params={"min_length": "many"}).status_code == 400


def _blocks(client: TestClient, eid: str, frame: dict[str, int]) -> np.ndarray:
    out = []
    for n in range(frame["blocks"]):
        answer = client.get(f"/api/episodes/{eid}/blocks/{n}.png")
        assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
        out.append(np.asarray(Image.open(io.BytesIO(answer.content))).reshape(-1, frame["height"], frame["width"], 3))
    return np.concatenate(out)


def test_an_episode_plays_back_what_was_recorded(client: TestClient, sources: dict[str, Any]) -> None:
    eid = sources["child"].stem
    shown = client.get(f"/api/episodes/{eid}").json()
    recorded = SpoolSource(sources["child"])
    steps = recorded.steps()
    assert shown["steps"]["action"] == steps.actions and shown["steps"]["reward"] == steps.reward
    assert shown["steps"]["actor"] == ["agent"] * recorded.length
    assert shown["steps"]["action_meanings"][:2] == ["NOOP", "FIRE"]
    frames = _blocks(client, eid, shown["steps"]["frame"])
    episode = Episode(sources["child"])
    assert np.array_equal(frames, episode.obs("frame", 0, episode.length + 1))  # every frame and the final one
    tree = shown["lineage"]["root"]
    assert tree["episode_id"] == sources["parent"].stem and [c["episode_id"] for c in tree["children"]] == [eid]
    assert client.get(f"/api/episodes/{eid}/blocks/{shown['steps']['frame']['blocks']}.png").status_code == 404


def test_the_verdict_is_replays_own(client: TestClient, sources: dict[str, Any]) -> None:
    eid = sources["parent"].stem
    assert client.get(f"/api/episodes/{eid}").json()["verdict"] is None
    verdict = client.get(f"/api/episodes/{eid}/verdict").json()
    assert verdict["status"] == "identical" and verdict["steps_run"] == Episode(sources["parent"]).length
    assert client.get(f"/api/episodes/{eid}").json()["verdict"] == verdict  # cached, in memory


@pytest.mark.parametrize("path", ["/api/episodes/{fake}", "/api/episodes/{fake}/verdict", "/api/episodes/{fake}/blocks/0.png",
                                  "/episodes/{fake}", "/api/episodes/..%2F..%2Fetc", "/episodes/%2E%2E"])  # fmt: skip
def test_an_unknown_episode_is_a_one_line_404(client: TestClient, path: str) -> None:
    answer = client.get(path.format(fake="0" * 8 + "-0000-4000-8000-" + "0" * 12))
    assert answer.status_code == 404
    text = answer.json()["error"] if path.startswith("/api/") else answer.text
    assert "\n" not in text.strip() and "Traceback" not in text


def test_bad_sources_and_tokens_are_one_line(sources: dict[str, Any], tmp_path: Path) -> None:
    empty = tmp_path / "token"
    empty.write_text("\n")
    short = tmp_path / "short"
    short.write_text("abc\n")
    cases = [
        ([str(tmp_path / "nowhere")], "is neither a directory nor a Hub repo id"),
        ([str(empty)], "is a file"),
        ([str(sources["parent"])], "is one episode, not a spool"),
        ([str(sources["spool"]), "--token-file", str(empty)], "does not hold a usable token"),
        ([str(sources["spool"]), "--token-file", str(short)], "does not hold a usable token"),
        ([str(sources["spool"]), "--token-file", str(tmp_path / "missing")], "cannot read the token file"),
        ([str(sources["spool"]), "--port", "70000"], "70000"),
    ]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        cases.append(([str(sources["spool"]), "--port", str(busy.getsockname()[1])], "cannot listen on 127.0.0.1:"))
        for args, expected in cases:
            done = CliRunner().invoke(view_main, args)
            lines = done.stderr.strip().splitlines()
            assert done.exit_code == 2 and len(lines) == 1 and expected in lines[0], (args, done.stderr)


def _serve(source: Path, tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """The real CLI on a free port; (the process, the URL it printed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "GYMREC_"))} | {"HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([str(BIN / "gymrec-view"), str(source), "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)  # fmt: skip
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    assert "2 episodes in" in line and "http://127.0.0.1:" in line, (line, proc.stderr.read() if proc.poll() is not None else "")
    return proc, line.split("open ", 1)[1].strip()


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium (apt-get install chromium)")
def test_a_browser_lists_and_plays_an_episode(sources: dict[str, Any], tmp_path: Path) -> None:
    """Debian's chromium through playwright against the real gymrec-view: the list, then an episode played to
    its end and scrubbed back, the canvas read each time; the spool is untouched."""
    playwright = pytest.importorskip("playwright.sync_api")
    before = tree_digest(sources["spool"])
    proc, url = _serve(sources["spool"], tmp_path)
    episode = Episode(sources["parent"])
    try:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page()
                page.goto(url)
                assert "token" not in page.url  # the redirect dropped it from the address bar
                page.wait_for_selector("#rows tr")
                assert page.locator("#rows tr").count() == 2
                page.select_option("#filter-player", "test")
                page.click("#apply")
                page.wait_for_function("document.querySelectorAll('#rows tr').length === 1")
                page.click(f"#rows tr[data-episode='{episode.id}'] a")
                page.wait_for_selector("body[data-ready='1']")
                page.select_option("#speed", "4")
                page.click("#play")
                page.wait_for_selector("#screen[data-ended='1']", timeout=30_000)
                assert _canvas(page).tobytes() == episode.obs("frame", episode.length, episode.length + 1)[0].tobytes()
                page.fill("#step", "7")
                page.dispatch_event("#step", "input")
                page.wait_for_selector("#screen[data-step='7']")
                assert np.array_equal(_canvas(page), episode.obs("frame", 7, 8)[0])
                assert "step 7 / " in page.text_content("#now") and "actor agent" in page.text_content("#now")
                page.click("#verify")
                page.wait_for_selector("#verdict[data-status]", timeout=30_000)
                assert page.get_attribute("#verdict", "data-status") == "identical"
            finally:
                browser.close()
    finally:
        code, err = _stop(proc)
    assert code == 0 and "Traceback" not in err, err
    assert tree_digest(sources["spool"]) == before  # read-only: not a byte of the spool changed


def _canvas(page: Any) -> np.ndarray:
    """The canvas's pixels as the page holds them (RGB of getImageData's RGBA)."""
    height, width, raw = page.evaluate("""() => { const c = document.getElementById('screen');
        return [c.height, c.width, Array.from(c.getContext('2d').getImageData(0, 0, c.width, c.height).data)]; }""")
    return np.asarray(raw, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]


def test_served_read_only_over_real_http(sources: dict[str, Any], tmp_path: Path) -> None:
    """The real CLI and uvicorn on 127.0.0.1: the printed URL works once, then the cookie; nothing is written."""
    import urllib.error
    import urllib.request

    before = tree_digest(sources["dataset"])
    proc, url = _serve(sources["dataset"], tmp_path)
    try:
        base = url.split("/episodes")[0]
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(base + "/api/episodes", timeout=30)
        assert refused.value.code == 401
        token = url.split("token=")[1]
        request = urllib.request.Request(base + "/api/episodes", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            assert json.load(answer)["total"] == 2
    finally:
        code, err = _stop(proc)
    assert code == 0 and "Traceback" not in err, err
    assert tree_digest(sources["dataset"]) == before


def test_a_hub_dataset(sources: dict[str, Any], hub: Any, tmp_path: Path) -> None:
    """owner/name through the suite's Hub with the real client: listed from the index shards, played, verified."""
    root = sources["dataset"]
    hub.seed_repo("someone-else/breakout", {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*")
                                            if p.is_file() and not p.name.startswith(".")})  # fmt: skip
    catalog = open_catalog("someone-else/breakout", HubAccess(hub.endpoint))
    for client in client_for(catalog, tmp_path):
        client.headers["X-Gymrec-Token"] = TOKEN
        assert client.get("/api/episodes", params={"player": "alice"}).json()["episodes"][0]["episode_id"] == sources["child"].stem
        eid = sources["parent"].stem
        frame = client.get(f"/api/episodes/{eid}").json()["steps"]["frame"]
        episode = Episode(sources["parent"])
        assert np.array_equal(_blocks(client, eid, frame), episode.obs("frame", 0, episode.length + 1))
        assert client.get(f"/api/episodes/{eid}/verdict").json()["status"] == "identical"
    missing = CliRunner().invoke(view_main, ["someone-else/nothing-here", "--endpoint", hub.endpoint])
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1, missing.stderr
    assert "does not exist" in missing.stderr


def test_a_takeover_rewind_shows_its_actors_and_lineage(spool: Path, tmp_path: Path) -> None:
    """A real --takeover session rewound by the person: the branch's actors (copied, then human) and the tree."""
    import pygame

    from tests.test_play_human import DOWN, UP, tap
    from tests.test_takeover_rewind import _takeover

    script = {0: tap(pygame.K_n), 3: tap(pygame.K_t), 4: [(DOWN, pygame.K_RIGHT)],
              9: [(UP, pygame.K_RIGHT), (DOWN, pygame.K_r)], 12: [(UP, pygame.K_r)], 14: [(DOWN, pygame.K_ESCAPE)]}  # fmt: skip
    (parent, branch), _, _ = _takeover(spool, script)
    for client in client_for(open_catalog(str(spool), HubAccess(None)), tmp_path):
        client.headers["X-Gymrec-Token"] = TOKEN
        rows = {r["episode_id"]: r for r in client.get("/api/episodes").json()["episodes"]}
        assert rows[branch.id]["takeover"] is True and rows[branch.id]["parent_episode_id"] == parent.id
        assert rows[parent.id]["end_reason"] == "branched" and rows[parent.id]["branched_at"] == parent.attrs.branched_at
        shown = client.get(f"/api/episodes/{branch.id}").json()
        step = branch.attrs.branch_step or 0
        assert shown["steps"]["actor"] == ["copied"] * step + ["human"] * (branch.length - step)
        tree = client.get(f"/api/episodes/{parent.id}").json()["lineage"]["root"]
        assert tree["episode_id"] == parent.id and [(c["episode_id"], c["branch_step"]) for c in tree["children"]] == [(branch.id, step)]


def test_a_damaged_episode_is_listed_with_its_problem(sources: dict[str, Any], tmp_path: Path) -> None:
    spool = tmp_path / "spool"
    damaged = copy_episode(sources["parent"], spool)
    (damaged / "zarr.json").write_text("{not json")
    for client in client_for(open_catalog(str(spool), HubAccess(None)), tmp_path):
        client.headers["X-Gymrec-Token"] = TOKEN
        (row,) = client.get("/api/episodes").json()["episodes"]
        assert row["episode_id"] == damaged.stem and "zarr.json" in row["error"]
        opened = client.get(f"/api/episodes/{damaged.stem}")
        assert opened.status_code == 500 and "the episode is damaged" in opened.json()["error"]
        assert "Traceback" not in opened.text and "\n" not in opened.json()["error"]


def test_a_withdrawn_participant_is_not_shown(sources: dict[str, Any], tmp_path: Path) -> None:
    """A withdrawal requested but not yet carried out (the recorder still writing, say): already hidden."""
    spool = tmp_path / "spool"
    kept, gone = copy_episode(sources["parent"], spool), copy_episode(sources["child"], spool)
    for client in client_for(open_catalog(str(spool), HubAccess(None)), tmp_path):
        client.headers["X-Gymrec-Token"] = TOKEN
        assert client.get("/api/episodes").json()["total"] == 2
        (spool / "withdrawals").mkdir()
        (spool / "withdrawals" / f"{PARTICIPANT}.json").write_text("{}")
        assert [r["episode_id"] for r in client.get("/api/episodes").json()["episodes"]] == [kept.stem]
        assert client.get(f"/api/episodes/{gone.stem}").status_code == 404
        assert client.get(f"/api/episodes/{gone.stem}/blocks/0.png").status_code == 404
