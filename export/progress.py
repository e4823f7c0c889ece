"""Progress reporting as a protocol: the CLI passes a tqdm bar on a terminal, a silent one otherwise."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    def update(self, n: int = 1) -> object: ...

    def close(self) -> None: ...


# (total, description, unit) -> a bar; the CLI decides whether it draws anything.
ProgressFactory = Callable[[int, str, str], Progress]


class Silent:
    """No output: not a terminal, or a library caller."""

    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


def silent(total: int, desc: str, unit: str) -> Progress:
    return Silent()
