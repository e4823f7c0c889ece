"""Where every gymrec command gets its Hub token and endpoint: one rule, shared by all of them.

Token: ``HF_TOKEN``, then ``HF_TOKEN=`` in a ``.env`` in the working directory, then
huggingface_hub's login cache (the file ``hf auth login`` writes: ``$HF_TOKEN_PATH``, else
``$HF_HOME/token``, else ``~/.cache/huggingface/token``). Whitespace around a token is stripped (a
trailing newline from ``echo`` or a secrets file is the common case); an empty value counts as unset.
Endpoint: ``--endpoint``, then ``HF_ENDPOINT``, else huggingface_hub's default.

The CLI passes its environment mapping in; nothing here reads the process environment. A token is never
printed, logged or part of a ``repr``; only where it came from is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gymrec.shared.errors import CredentialsError

DOTENV_NAME = ".env"
TOKEN_KEY = "HF_TOKEN"


@dataclass(frozen=True)
class HubAccess:
    """A token (or none) and an endpoint (None: huggingface.co), with where the token came from."""

    endpoint: str | None
    token: str | None = field(default=None, repr=False)
    token_source: str | None = None

    @property
    def where(self) -> str:
        return self.endpoint or "https://huggingface.co"


def _dotenv_value(line: str) -> tuple[str, str] | None:
    """``KEY=VALUE`` of one .env line (python-dotenv's subset that matters), None for a blank/comment."""
    text = line.strip()
    if not text or text.startswith("#"):
        return None
    key, sep, value = text.removeprefix("export ").partition("=")
    if not sep or not key.strip() or " " in key.strip():
        raise ValueError("expected KEY=VALUE")
    value = value.strip()
    if value[:1] in ("'", '"'):
        quote = value[0]
        end = value.find(quote, 1)
        if end < 0:
            raise ValueError("unterminated quote")
        return key.strip(), value[1:end]
    return key.strip(), value.split(" #")[0].strip()


def dotenv_token(path: Path) -> str | None:
    """``HF_TOKEN`` from a ``.env`` file; a malformed line is an error naming the file and line."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise CredentialsError(f"cannot read {path}: {e.strerror}", "fix its permissions or remove it") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        bad_line = raw[: e.start].count(b"\n") + 1
        raise CredentialsError(f"{path}:{bad_line}: not UTF-8 text", "save the file as UTF-8") from e
    for number, line in enumerate(text.splitlines(), start=1):
        try:
            pair = _dotenv_value(line)
        except ValueError as e:
            raise CredentialsError(f"{path}:{number}: malformed line ({e})", "write it as KEY=VALUE or comment it out") from e
        if pair is not None and pair[0] == TOKEN_KEY:
            return pair[1].strip() or None
    return None


def login_cache_path(environ: Mapping[str, str]) -> Path | None:
    """The token file huggingface_hub's login writes (its own resolution of HF_TOKEN_PATH / HF_HOME).

    None when the mapping names no home at all: there is no login to find, and ``Path.home()`` is the
    CLI edge's business, not a fallback here.
    """
    if environ.get("HF_TOKEN_PATH"):
        return Path(environ["HF_TOKEN_PATH"]).expanduser()
    if environ.get("HF_HOME"):
        return Path(environ["HF_HOME"]).expanduser() / "token"
    cache = environ.get("XDG_CACHE_HOME") or (str(Path(environ["HOME"]) / ".cache") if environ.get("HOME") else "")
    return Path(cache).expanduser() / "huggingface" / "token" if cache else None


def _cached_token(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise CredentialsError(f"cannot read the Hugging Face login cache {path} ({e})", "run 'hf auth login' again") from e


def resolve_token(environ: Mapping[str, str], cwd: Path) -> tuple[str | None, str | None]:
    """(token, where it came from) by the rule above; (None, None) when there is none."""
    token = environ.get(TOKEN_KEY, "").strip()
    if token:
        return token, TOKEN_KEY
    dotenv = cwd / DOTENV_NAME
    token = dotenv_token(dotenv) or ""
    if token:
        return token, str(dotenv)
    cache = login_cache_path(environ)
    token = (_cached_token(cache) if cache is not None else None) or ""
    return (token, str(cache)) if token else (None, None)


def resolve_endpoint(flag: str | None, environ: Mapping[str, str]) -> str | None:
    value = (flag or environ.get("HF_ENDPOINT") or "").strip().rstrip("/")
    return value or None


def hub_access(flag_endpoint: str | None, environ: Mapping[str, str], cwd: Path) -> HubAccess:
    """The one rule, for every command."""
    token, source = resolve_token(environ, cwd)
    return HubAccess(resolve_endpoint(flag_endpoint, environ), token, source)
