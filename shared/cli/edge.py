"""The CLI edge: turn any failure into one line on stderr and an exit code.

Modelled on huggingface_hub's ``cli/_errors.py``: typed errors map to a one-line message; anything
unexpected becomes one line too, with the traceback only when ``GYMREC_DEBUG=1``.
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import os
import sys
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import click

from gymrec.shared.errors import DiskFullError, GymrecError

P = ParamSpec("P")
R = TypeVar("R")

EXIT_INTERRUPTED = 130
EXIT_INTERNAL = 3
EXIT_CLOSED_PIPE = 128 + 13  # what a shell reports for a Unix tool ended by SIGPIPE (``seq 1 9999 | head``)


class FiniteFloat(click.ParamType):
    """A float within [low, high]: click's FloatRange lets nan through (every comparison with it is false)."""

    name = "float"

    def __init__(self, low: float, high: float) -> None:
        self.low, self.high = low, high

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(number) or not self.low <= number <= self.high:
            self.fail(f"{value!r} is not a number from {self.low:g} to {self.high:g}", param, ctx)
        return number


def debug_enabled() -> bool:
    return os.environ.get("GYMREC_DEBUG", "") not in ("", "0", "false", "no")


def configure_logging(verbose: bool = False) -> None:
    level = logging.DEBUG if (verbose or debug_enabled()) else logging.WARNING
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def error_line(prog: str, exc: BaseException) -> tuple[str, int]:
    """What to print and which code to exit with for ``exc``."""
    if isinstance(exc, GymrecError):
        return f"{prog}: error: {_one_line(str(exc))}", exc.exit_code
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        full = DiskFullError(
            f"the disk is full ({exc.filename or 'spool'})",
            "free some space and run again; everything recorded so far is kept",
        )
        return f"{prog}: error: {full}", full.exit_code
    if isinstance(exc, PermissionError):
        return (
            f"{prog}: error: permission denied: {exc.filename or exc} (check the path's owner and mode)",
            2,
        )
    name = type(exc).__name__
    return (
        f"{prog}: error: unexpected {name}: {_one_line(str(exc)) or 'no message'} "
        "(run again with GYMREC_DEBUG=1 for a traceback and report it)",
        EXIT_INTERNAL,
    )


def _closed_pipe() -> None:
    """The reader of stdout went away (``| head``): end quietly, as Unix tools do. stdout is pointed
    at /dev/null so that Python's own flush at exit does not complain about the pipe again."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, sys.stdout.fileno())
    os.close(null)
    sys.exit(EXIT_CLOSED_PIPE)


def cli_edge(prog: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorate a click command body so every failure ends as one line and an exit code."""

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def inner(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
                raise
            except KeyboardInterrupt:
                click.echo(f"{prog}: interrupted", err=True)
                sys.exit(EXIT_INTERRUPTED)
            except BrokenPipeError:
                _closed_pipe()
                raise  # not reached: _closed_pipe exits
            except Exception as exc:  # the CLI edge: the one place a broad except belongs
                if debug_enabled():
                    raise
                line, code = error_line(prog, exc)
                click.echo(line, err=True)
                sys.exit(code)

        return inner

    return wrap


def _one_line_main(main: Callable[..., Any], name: str, args: Any, kwargs: dict[str, Any]) -> Any:
    if not kwargs.get("standalone_mode", True):
        return main(*args, **kwargs)
    kwargs["standalone_mode"] = False
    try:
        code = main(*args, **kwargs)
    except click.UsageError as e:
        path = e.ctx.command_path if e.ctx is not None else name
        click.echo(f"{name}: error: {_one_line(e.format_message())} (see {path} --help)", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"{name}: error: {_one_line(e.format_message())}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo(f"{name}: interrupted", err=True)
        sys.exit(EXIT_INTERRUPTED)
    except BrokenPipeError:  # --help or a usage line into a closed pipe
        _closed_pipe()
    # Callbacks return None; an int comes from click's own exits (e.g. --help).
    sys.exit(code if isinstance(code, int) else 0)


class OneLineCommand(click.Command):
    """click prints usage errors as a three-line block; gymrec's rule is one line and exit 2."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        return _one_line_main(super().main, self.name or "gymrec", args, kwargs)


class OneLineGroup(click.Group):
    def main(self, *args: Any, **kwargs: Any) -> Any:
        return _one_line_main(super().main, self.name or "gymrec", args, kwargs)
