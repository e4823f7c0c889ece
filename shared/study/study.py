"""A study protocol as data: the TOML file ``gymrec-serve`` runs, parsed once into a frozen ``Study``.

The file says what every participant sees and plays, in order: consent (nothing is recorded before
it is accepted), instructions, the games (each a number of episodes, each optionally cut at a number
of seconds of play), an optional questionnaire, and the completion code. A bad file is one
``StudyError`` line naming the file, the key and what to write instead.

    [study]
    id = "breakout-pilot"            # letters, digits, - and _: stored with every episode
    title = "Play Breakout"
    consent = "I agree that ..."
    instructions = "Use the arrow keys ..."
    completion_code = "C0FFEE12"
    salt = "a long random secret"     # pseudonymises participant ids; never published
    participant_param = "PROLIFIC_PID"  # the URL parameter that carries the participant id
    publish_answers = false           # questionnaire answers stay in the spool unless true

    [[games]]
    env = "ALE/Breakout-v5"
    episodes = 1
    seconds = 60

    [[questions]]
    id = "fun"
    text = "How much fun was it (1-5)?"
    kind = "choice"                   # text | number | choice
    choices = ["1", "2", "3", "4", "5"]
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gymrec.shared.errors import StudyError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
QUESTION_KINDS = ("text", "number", "choice")
MIN_SALT_CHARS = 16
MAX_SECONDS = 24 * 3600


@dataclass(frozen=True)
class Game:
    env: str
    episodes: int = 1
    seconds: float | None = None  # each episode ends (truncated) after this much play; None: the game's own end
    fps: float | None = None  # None: the env's native rate


@dataclass(frozen=True)
class Question:
    id: str
    text: str
    kind: str = "text"
    choices: tuple[str, ...] = ()
    required: bool = False


@dataclass(frozen=True)
class Study:
    id: str
    title: str
    consent: str
    instructions: str
    completion_code: str
    salt: str
    games: tuple[Game, ...]
    questions: tuple[Question, ...] = ()
    participant_param: str = "PROLIFIC_PID"
    publish_answers: bool = False


class _Table:
    """One TOML table read key by key, every problem a StudyError naming the file and the key."""

    def __init__(self, where: str, data: object) -> None:
        if not isinstance(data, dict):
            raise StudyError(f"{where} is not a table", "see docs/browser.md for the study file's layout")
        self.where, self.data = where, data

    def _fail(self, key: str, what: str) -> StudyError:
        return StudyError(f"{self.where}.{key} {what}", "see docs/browser.md for the study file's layout")

    def text(self, key: str, default: str | None = None, pattern: re.Pattern[str] | None = None) -> str:
        value = self.data.get(key, default)
        if value is None:
            raise self._fail(key, "is missing")
        if not isinstance(value, str) or not value.strip():
            raise self._fail(key, f"must be a non-empty string, not {value!r}")
        if pattern is not None and not pattern.match(value):
            raise self._fail(key, f"{value!r} must be letters, digits, '.', '-' or '_' (at most 64)")
        return value

    def number(self, key: str, kind: type, low: float, high: float, default: Any = None) -> Any:
        value = self.data.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and not isinstance(value, int)):
            raise self._fail(key, f"must be a {kind.__name__}, not {value!r}")
        if not low <= value <= high:
            raise self._fail(key, f"is {value!r}; it must be from {low:g} to {high:g}")
        return kind(value)

    def flag(self, key: str, default: bool) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self._fail(key, f"must be true or false, not {value!r}")
        return value

    def tables(self, key: str) -> list[Any]:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            raise self._fail(key, "must be an array of tables ([[" + key + "]])")
        return value


def _game(where: str, data: object) -> Game:
    t = _Table(where, data)
    return Game(env=t.text("env"), episodes=t.number("episodes", int, 1, 10_000, 1),
                seconds=t.number("seconds", float, 1, MAX_SECONDS), fps=t.number("fps", float, 1, 240))


def _question(where: str, data: object) -> Question:
    t = _Table(where, data)
    kind = t.text("kind", "text")
    if kind not in QUESTION_KINDS:
        raise StudyError(f"{where}.kind is {kind!r}", f"use one of {', '.join(QUESTION_KINDS)}")
    raw = t.data.get("choices", [])
    if not isinstance(raw, list) or not all(isinstance(c, str) and c for c in raw):
        raise StudyError(f"{where}.choices must be a list of strings", "write choices = [\"yes\", \"no\"]")
    if kind == "choice" and not raw:
        raise StudyError(f"{where} is a choice with no choices", "add choices = [...] or use kind = \"text\"")
    return Question(id=t.text("id", pattern=NAME), text=t.text("text"), kind=kind, choices=tuple(raw),
                    required=t.flag("required", False))


def parse_study(data: dict[str, Any], where: str) -> Study:
    """``data`` (a parsed TOML document) as a Study, or a StudyError naming ``where``."""
    head = _Table(f"{where}: [study]", data.get("study"))
    salt = head.text("salt")
    if len(salt) < MIN_SALT_CHARS:
        raise StudyError(f"{where}: [study].salt has {len(salt)} characters",
                         f"use a random secret of at least {MIN_SALT_CHARS} (python -c 'import secrets; print(secrets.token_hex(16))')")
    top = _Table(where, data)
    games = tuple(_game(f"{where}: games[{i}]", g) for i, g in enumerate(top.tables("games")))
    if not games:
        raise StudyError(f"{where}: the study has no games", "add a [[games]] table with env = \"ALE/Breakout-v5\"")
    questions = tuple(_question(f"{where}: questions[{i}]", q) for i, q in enumerate(top.tables("questions")))
    ids = [q.id for q in questions]
    if len(set(ids)) != len(ids):
        raise StudyError(f"{where}: two questions share an id", "give every [[questions]] its own id")
    return Study(
        id=head.text("id", pattern=NAME), title=head.text("title", "gymrec study"), consent=head.text("consent"),
        instructions=head.text("instructions"), completion_code=head.text("completion_code"), salt=salt,
        games=games, questions=questions,
        participant_param=head.text("participant_param", "PROLIFIC_PID", pattern=NAME),
        publish_answers=head.flag("publish_answers", False),
    )


def load_study(path: Path) -> Study:
    """Read and check the study file at ``path``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise StudyError(f"study file {path} does not exist", "pass the path of a study TOML file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise StudyError(f"cannot read study file {path}: {e}", "check the path and its permissions") from e
    except tomllib.TOMLDecodeError as e:
        raise StudyError(f"{path} is not valid TOML: {e}", "fix the line it names") from e
    return parse_study(data, str(path))
