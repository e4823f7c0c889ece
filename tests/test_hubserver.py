"""The test Hub server, driven by the real huggingface_hub and datasets clients."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    HfFileSystem,
    RepoFile,
    constants,
    hf_hub_download,
)
from huggingface_hub.errors import (
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.hubserver import FaultPlan, HubServer, running_hub

# huggingface_hub's own LFS upload call triggers this httpx2 deprecation.
pytestmark = pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")

TOKEN = "hf_test_token"
REPO = "tester/episodes"


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[HubServer]:
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    # huggingface_hub reads the variable at import: conftest sets it first; the client is never patched
    assert constants.HF_HUB_DISABLE_XET, "huggingface_hub was imported before conftest set HF_HUB_DISABLE_XET=1"
    with running_hub(TOKEN, tmp_path) as server:
        yield server


def _api(hub: HubServer, token: str | bool = TOKEN) -> HfApi:
    return HfApi(endpoint=hub.endpoint, token=token)


def _parquet(rows: int) -> bytes:
    buf = io.BytesIO()
    pq.write_table(pa.table({"step": list(range(rows)), "reward": [0.5] * rows}), buf)
    return buf.getvalue()


def _commit(api: HfApi, files: dict[str, bytes], parent_commit: str | None = None) -> str:
    ops = [CommitOperationAdd(path, data) for path, data in files.items()]
    return api.create_commit(REPO, ops, commit_message="add", repo_type="dataset", parent_commit=parent_commit).oid


def test_commit_tree_download_round_trip(hub: HubServer, tmp_path: Path) -> None:
    api = _api(hub)
    assert api.whoami()["name"] == "tester"
    url = api.create_repo("episodes", repo_type="dataset", private=True)
    assert url.repo_id == REPO
    api.create_repo(REPO, repo_type="dataset", exist_ok=True)  # a 409 the client swallows
    data = _parquet(20_000)
    meta = b'{"episode_id": "e1"}'
    oid = _commit(api, {"data/ale-breakout-v5/e1.parquet": data, "meta/episodes/e1.json": meta})

    head = hub.commits(REPO)[-1]
    assert head.oid == oid == api.dataset_info(REPO).sha
    assert head.files["data/ale-breakout-v5/e1.parquet"].lfs and not head.files["meta/episodes/e1.json"].lfs
    assert hub.stats["lfs_upload"] == 1 and hub.stats["lfs_verify"] == 1
    assert hub.files(REPO)["data/ale-breakout-v5/e1.parquet"] == data

    tree = {e.path: e for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True, expand=True)}
    assert set(tree) == {".gitattributes", "data", "data/ale-breakout-v5", "data/ale-breakout-v5/e1.parquet",
                         "meta", "meta/episodes", "meta/episodes/e1.json"}
    lfs_entry = tree["data/ale-breakout-v5/e1.parquet"]
    assert isinstance(lfs_entry, RepoFile) and lfs_entry.last_commit is not None
    assert lfs_entry.size == len(data) and lfs_entry.lfs is not None and lfs_entry.last_commit.oid == oid
    top = [e.path for e in api.list_repo_tree(REPO, repo_type="dataset")]
    assert sorted(top) == [".gitattributes", "data", "meta"]
    infos = api.get_paths_info(REPO, ["meta/episodes/e1.json", "data", "missing.txt"], repo_type="dataset")
    assert [i.path for i in infos] == ["meta/episodes/e1.json", "data"]

    for path, expected in (("data/ale-breakout-v5/e1.parquet", data), ("meta/episodes/e1.json", meta)):
        local = hf_hub_download(REPO, path, repo_type="dataset", endpoint=hub.endpoint, token=TOKEN,
                                cache_dir=tmp_path / "cache")
        assert Path(local).read_bytes() == expected

    # The same bytes again: the LFS batch answers "already stored" and nothing is re-uploaded.
    _commit(api, {"data/ale-breakout-v5/copy.parquet": data})
    assert hub.stats["lfs_upload"] == 1
    api.create_commit(REPO, [CommitOperationDelete("meta/")], commit_message="rm", repo_type="dataset")
    assert "meta/episodes/e1.json" not in hub.files(REPO)
    assert [c.title for c in api.list_repo_commits(REPO, repo_type="dataset")] == ["rm", "add", "add",
                                                                                   "initial commit"]


def test_missing_entries_repos_and_revisions(hub: HubServer, tmp_path: Path) -> None:
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset")
    with pytest.raises(RemoteEntryNotFoundError) as tree_err:
        list(api.list_repo_tree(REPO, "data/nope", repo_type="dataset"))
    assert tree_err.value.response.headers["X-Error-Code"] == "EntryNotFound"
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(REPO, "nope.json", repo_type="dataset", endpoint=hub.endpoint, token=TOKEN,
                        cache_dir=tmp_path / "cache")
    with pytest.raises(RepositoryNotFoundError) as repo_err:
        api.dataset_info("tester/missing")
    assert repo_err.value.response.status_code == 404
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(REPO, revision="0" * 40)
    with pytest.raises(HfHubHTTPError) as exists:
        api.create_repo(REPO, repo_type="dataset")
    assert exists.value.response.status_code == 409


def test_stale_parent_commit_is_rejected(hub: HubServer) -> None:
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset")
    parent = api.dataset_info(REPO).sha
    _commit(api, {"a.json": b"{}"}, parent_commit=parent)
    with pytest.raises(HfHubHTTPError) as err:
        _commit(api, {"b.json": b"{}"}, parent_commit=parent)
    assert type(err.value) is HfHubHTTPError
    assert err.value.response.status_code == 412
    assert "A commit has happened since" in str(err.value)
    assert "b.json" not in hub.files(REPO)


def test_racing_uploaders_one_wins(hub: HubServer) -> None:
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset")
    parent = api.dataset_info(REPO).sha
    outcomes: list[int] = []

    def upload(i: int) -> None:
        try:
            _commit(_api(hub), {f"meta/episodes/e{i}.json": b"{}"}, parent_commit=parent)
            outcomes.append(200)
        except HfHubHTTPError as e:
            outcomes.append(e.response.status_code)

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [200, 412, 412, 412]
    assert len(hub.commits(REPO)) == 2


def test_auth_private_write_and_revoked(hub: HubServer) -> None:
    api, anon = _api(hub), _api(hub, token=False)
    api.create_repo("private", repo_type="dataset", private=True)
    api.create_repo("public", repo_type="dataset")
    assert anon.dataset_info("tester/public").private is False
    with pytest.raises(RepositoryNotFoundError) as hidden:
        anon.dataset_info("tester/private")
    assert hidden.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as write:
        anon.create_commit("tester/public", [CommitOperationAdd("x.json", b"{}")], commit_message="x",
                           repo_type="dataset")
    assert type(write.value) is HfHubHTTPError and write.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as wrong:
        _api(hub, token="hf_wrong").dataset_info("tester/public")
    assert wrong.value.response.status_code == 401

    hub.revoked = True
    with pytest.raises(HfHubHTTPError) as who:
        api.whoami()
    assert who.value.response.status_code == 401 and "Invalid user token" in str(who.value)
    with pytest.raises(HfHubHTTPError) as revoked:
        api.create_commit("tester/public", [CommitOperationAdd("x.json", b"{}")], commit_message="x",
                          repo_type="dataset")
    assert type(revoked.value) is HfHubHTTPError and revoked.value.response.status_code == 401
    hub.revoked = False
    assert "x.json" not in hub.files("tester/public")


def test_injected_commit_faults_reach_the_caller(hub: HubServer) -> None:
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset")
    data = _parquet(1000)
    hub.fail_next("commit", 1, "503")
    with pytest.raises(HfHubHTTPError) as err:
        _commit(api, {"data/x/e.parquet": data})
    assert type(err.value) is HfHubHTTPError and err.value.response.status_code == 503
    assert hub.stats["commit"] == 1 and hub.injected["commit:503"] == 1
    assert len(hub.commits(REPO)) == 1

    hub.fail_next("commit", 1, "429")
    with pytest.raises(HfHubHTTPError) as limited:
        _commit(api, {"data/x/e.parquet": data})
    assert limited.value.response.status_code == 429 and limited.value.response.headers["Retry-After"] == "0"

    hub.fail_next("commit", 1, "409")
    with pytest.raises(HfHubHTTPError) as busy:
        _commit(api, {"data/x/e.parquet": data})
    assert type(busy.value) is HfHubHTTPError and busy.value.response.status_code == 409

    hub.fail_next("commit", 1, "drop")
    with pytest.raises(httpx2.RemoteProtocolError):
        _commit(api, {"data/x/e.parquet": data})
    assert len(hub.commits(REPO)) == 1

    # A lost response: the commit lands but the caller sees a transport error, not an HfHubHTTPError.
    hub.fail_next("commit", 1, "drop_after")
    with pytest.raises(httpx2.RemoteProtocolError):
        _commit(api, {"data/x/e.parquet": data})
    assert len(hub.commits(REPO)) == 2 and hub.files(REPO)["data/x/e.parquet"] == data
    assert hub.stats["lfs_upload"] == 1  # retries found the object already stored


def test_client_retries_dropped_preupload(hub: HubServer) -> None:
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset")
    hub.fail_next("preupload", 1, "drop")
    _commit(api, {"data/x/e.parquet": _parquet(100)})  # huggingface_hub retries preupload itself
    assert hub.stats["preupload"] == 2 and hub.stats["commit"] == 1


def test_fault_plan_is_seeded_and_scoped() -> None:
    def draws(server: HubServer, endpoint: str) -> list[str | None]:
        return [server.draw_fault(endpoint) for _ in range(40)]

    a, b = HubServer(), HubServer()
    for server in (a, b):
        server.faults = FaultPlan(rate=0.5, kinds=("500", "drop"), seed=7)
    seq = draws(a, "commit")
    assert seq == draws(b, "commit") and {None, "500", "drop"} == set(seq)
    assert draws(a, "resolve") == [None] * 40  # only_writes
    a.faults = FaultPlan(rate=1.0, kinds=("503",), only_writes=False, endpoints=frozenset({"tree"}))
    assert draws(a, "tree") == ["503"] * 40 and draws(a, "commit") == [None] * 40
    with pytest.raises(ValueError):
        FaultPlan(kinds=("418",))


def test_resolve_headers_and_ranges(hub: HubServer) -> None:
    api = _api(hub)
    api.create_repo(REPO, repo_type="dataset")
    data = _parquet(5000)
    oid = _commit(api, {"data/x/e.parquet": data})
    url = f"{hub.endpoint}/datasets/{REPO}/resolve/main/data/x/e.parquet"
    head = httpx2.head(url)
    assert head.headers["X-Repo-Commit"] == oid and int(head.headers["X-Linked-Size"]) == len(data)
    assert head.headers["Content-Length"] == str(len(data)) and head.content == b""
    assert head.headers["X-Linked-Etag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    part = httpx2.get(url, headers={"Range": "bytes=10-19"})
    assert part.status_code == 206 and part.content == data[10:20]
    assert part.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert httpx2.get(url, headers={"Range": "bytes=-4"}).content == data[-4:]
    assert httpx2.get(url, headers={"Range": f"bytes={len(data)}-"}).status_code == 416

    fs = HfFileSystem(endpoint=hub.endpoint, token=TOKEN, skip_instance_cache=True)
    with fs.open(f"datasets/{REPO}/data/x/e.parquet", "rb", block_size=1024) as f:
        f.seek(100)
        assert f.read(3000) == data[100:3100]
    assert fs.ls(f"datasets/{REPO}/data/x", detail=False) == [f"datasets/{REPO}/data/x/e.parquet"]


def test_stop_leaves_no_threads(tmp_path: Path) -> None:
    with running_hub(TOKEN, tmp_path) as server:
        api = _api(server)
        api.create_repo(REPO, repo_type="dataset")
        _commit(api, {"a.json": b"{}"})  # leaves keep-alive connections open in the client pool
    alive = [t.name for t in threading.enumerate() if "hubserver" in t.name or "process_request" in t.name]
    assert alive == []


_DATASETS_CHILD = """
import json, sys
import pyarrow as pa, pyarrow.parquet as pq
from datasets import Dataset, load_dataset
from huggingface_hub import CommitOperationAdd, HfApi
repo, token, endpoint = sys.argv[1:4]
out = {}
Dataset.from_dict({"step": [0, 1, 2], "action": [3, 1, 2]}).push_to_hub(repo, token=token)
out["plain"] = load_dataset(repo, split="train", token=token).to_dict()

card = '''---
configs:
- config_name: ale-breakout-v5
  data_files:
  - split: train
    path: data/ale-breakout-v5/*.parquet
---
# test
'''
ops = [CommitOperationAdd("README.md", card.encode())]
for i in range(2):
    path = f"/tmp/_hub_child_{i}.parquet"
    pq.write_table(pa.table({"episode_id": [f"e{i}"] * 3, "step": [0, 1, 2]}), path)
    ops.append(CommitOperationAdd(f"data/ale-breakout-v5/e{i}.parquet", path))
api = HfApi(endpoint=endpoint, token=token)
api.create_repo(repo + "-cfg", repo_type="dataset")
api.create_commit(repo + "-cfg", ops, commit_message="episodes", repo_type="dataset")
cfg = load_dataset(repo + "-cfg", "ale-breakout-v5", split="train", token=token)
out["config"] = sorted(zip(cfg["episode_id"], cfg["step"]))
stream = load_dataset(repo + "-cfg", "ale-breakout-v5", split="train", streaming=True, token=token)
out["stream"] = sorted((r["episode_id"], r["step"]) for r in stream)
print("RESULT " + json.dumps(out))
"""


def test_datasets_push_and_load(hub: HubServer, tmp_path: Path) -> None:
    # datasets and huggingface_hub read HF_ENDPOINT at import, so they run in a fresh interpreter.
    script = tmp_path / "child.py"
    script.write_text(_DATASETS_CHILD.replace("/tmp/_hub_child_", str(tmp_path / "shard_")))
    env = {**os.environ, "HF_ENDPOINT": hub.endpoint, "HF_HUB_DISABLE_XET": "1", "HF_HOME": str(tmp_path / "hf"),
           "HF_DATASETS_CACHE": str(tmp_path / "hf" / "datasets"), "HF_HUB_OFFLINE": "0",
           "HF_DATASETS_OFFLINE": "0", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
    env.pop("HF_TOKEN", None)
    proc = subprocess.run([sys.executable, str(script), REPO, TOKEN, hub.endpoint], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.split("RESULT ", 1)[1])
    assert result["plain"] == {"step": [0, 1, 2], "action": [3, 1, 2]}
    expected = [[f"e{i}", s] for i in range(2) for s in range(3)]
    assert result["config"] == expected and result["stream"] == expected
    assert hub.files(REPO)["data/train-00000-of-00001.parquet"].startswith(b"PAR1")
    assert hub.stats["lfs_upload"] >= 3


def test_seed_repo_serves_private_files(hub: HubServer, tmp_path: Path) -> None:
    data = _parquet(100)
    commit = hub.seed_repo(REPO, {"data/x/e.parquet": data, "README.md": b"# card\n"}, private=True)
    assert commit.files["data/x/e.parquet"].lfs and not commit.files["README.md"].lfs
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(REPO, "README.md", repo_type="dataset", endpoint=hub.endpoint, token=False,
                        cache_dir=tmp_path / "anon")
    local = hf_hub_download(REPO, "data/x/e.parquet", repo_type="dataset", endpoint=hub.endpoint, token=TOKEN,
                            revision=commit.oid, cache_dir=tmp_path / "cache")
    assert Path(local).read_bytes() == data
