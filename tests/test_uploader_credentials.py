"""The one token / endpoint rule and the one Hub-error table (shared by the uploader and replay)."""

from __future__ import annotations

from pathlib import Path

import pytest
from uploader_helpers import clean_env, run_uploader

from gymrec.shared.errors import (
    AuthError,
    CommitConflictError,
    CredentialsError,
    EntryNotFoundError,
    HubServerError,
    HubUnavailableError,
    RateLimitedError,
    RepoNotFoundError,
    hub_error,
)
from gymrec.shared.hub.credentials import hub_access, login_cache_path


def test_token_order_env_then_dotenv_then_login_cache(tmp_path: Path) -> None:
    cache = tmp_path / "hf-home" / "token"
    cache.parent.mkdir()
    cache.write_text("hf_cached\n")
    environ = {"HF_HOME": str(tmp_path / "hf-home")}
    assert login_cache_path(environ) == cache
    assert hub_access(None, environ, tmp_path).token == "hf_cached"
    (tmp_path / ".env").write_text("# comment\nOTHER=1\nexport HF_TOKEN='hf_dotenv'  \n")
    access = hub_access(None, environ, tmp_path)
    assert access.token == "hf_dotenv" and access.token_source == str(tmp_path / ".env")
    access = hub_access(None, environ | {"HF_TOKEN": " hf_env\n"}, tmp_path)
    assert access.token == "hf_env" and access.token_source == "HF_TOKEN"
    assert "hf_env" not in repr(access)


def test_empty_values_count_as_unset(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HF_TOKEN=\n")
    assert hub_access(None, {"HF_TOKEN": "  ", "HF_HOME": str(tmp_path)}, tmp_path).token is None


@pytest.mark.parametrize(("content", "line"), [(b"A=1\nnot a pair\n", 2), (b"A=1\nB=2\nHF_TOKEN=\xff\n", 3),
                                               (b"HF_TOKEN='open\n", 1)])
def test_malformed_dotenv_names_file_and_line(tmp_path: Path, content: bytes, line: int) -> None:
    (tmp_path / ".env").write_bytes(content)
    with pytest.raises(CredentialsError, match=rf"\.env:{line}: "):
        hub_access(None, {"HF_HOME": str(tmp_path)}, tmp_path)


def test_endpoint_rule() -> None:
    assert hub_access("http://a:1/", {"HF_ENDPOINT": "http://b:2"}, Path("/nonexistent")).endpoint == "http://a:1"
    assert hub_access(None, {"HF_ENDPOINT": "http://b:2"}, Path("/nonexistent")).endpoint == "http://b:2"
    assert hub_access(None, {}, Path("/nonexistent")).endpoint is None


@pytest.mark.parametrize(("status", "code", "cls", "transient"), [
    (401, None, AuthError, False), (403, None, AuthError, False), (404, None, RepoNotFoundError, False),
    (404, "EntryNotFound", EntryNotFoundError, False), (409, None, CommitConflictError, False),
    (412, None, CommitConflictError, False), (429, None, RateLimitedError, True), (500, None, HubServerError, True),
    (503, None, HubServerError, True), (408, None, HubServerError, True), (400, None, HubUnavailableError, False),
])  # fmt: skip
def test_hub_error_table(status: int, code: str | None, cls: type, transient: bool) -> None:
    error = hub_error(status, "o/r", code)
    assert type(error) is cls and error.transient is transient and "o/r" in str(error)


def test_retry_after_is_declared_not_patched() -> None:
    assert RateLimitedError.retry_after is None and HubServerError.retry_after is None
    assert hub_error(429, "o/r", retry_after="7").retry_after == 7.0
    assert hub_error(429, "o/r", retry_after="Wed, 21 Oct 2015 07:28:00 GMT").retry_after is None


def test_explicit_repo_id_without_a_token_is_an_error(tmp_path: Path, spool: Path) -> None:
    env = clean_env(HOME=str(tmp_path), HF_HOME=str(tmp_path / "hf-home"))
    done = run_uploader(["--spool", str(spool), "--once", "--repo-id", "a/b"], tmp_path, env)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "needs a Hub token" in done.stderr
    assert not (tmp_path / ".local" / "share" / "gymrec" / "dataset").exists()
