"""The F1 help panel: every key of the active keymap, laid out to fit the game area.

The narrowest window gymrec opens is 320 px (a 160 px Atari frame at ``--scale 2``), and a retro
keymap binds 28 keys and pad inputs, so a fixed list of lines cannot fit. Instead the panel is a flow
of entries ("keys: effect", the keys in the key colour), grouped by what they do, wrapped to the
area's width; when even that is too tall the font steps down until it fits. Help pauses the game, so
covering all of the game area is fine.

``layout`` returns where every label goes (``Label.rect``), so tests can check each bound key's name
lies inside the window without reading pixels; the real-window test checks the pixels too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import pygame

KEY = (255, 210, 90)  # key names: the one thing a player scans for
TEXT = (255, 255, 255)
HEAD = (150, 190, 255)
MUTED = (160, 160, 160)
SHADE = (0, 0, 0, 215)
FONT_SIZES = (26, 22, 20, 18, 16, 14, 12)  # pygame's default font: large on a big window; 12 still reads at 1:1
PAD = 8
GAP = 14  # between entries on one line
PAD_PREFIX = "pad "


@dataclass(frozen=True)
class Entry:
    keys: tuple[str, ...]
    effect: str


@dataclass(frozen=True)
class Section:
    title: str
    entries: tuple[Entry, ...]
    muted: bool = False  # keys the keymap binds that this game lacks


@dataclass(frozen=True)
class Label:
    text: str
    color: tuple[int, int, int]
    rect: pygame.Rect  # in panel coordinates
    is_key: bool


GYMREC_KEYS = (
    Entry(("Esc",), "quit"), Entry(("P",), "pause"), Entry(("Backspace",), "discard episode"),
    Entry(("F1",), "close help"), Entry(("hold R",), "rewind, then play on (a branch)"),
)  # fmt: skip
TAKEOVER_KEY = Entry(("T",), "take control from the agent, or give it back (R rewinds only while you have it)")


def _grouped(effects: Iterable[tuple[str, str]]) -> tuple[Entry, ...]:
    """Keys with the same effect share one entry ("left, pad left: LEFT"), in first-bound order."""
    by_effect: dict[str, list[str]] = {}
    for key, effect in effects:
        by_effect.setdefault(effect, []).append(key)
    return tuple(Entry(tuple(keys), effect) for effect, keys in by_effect.items())


def sections(effects: Mapping[str, str], missing: Sequence[str], takeover: bool) -> list[Section]:
    """What the panel says: gymrec's own keys, then the keymap's keyboard and gamepad bindings."""
    own = (*GYMREC_KEYS, TAKEOVER_KEY) if takeover else GYMREC_KEYS
    out = [Section("gymrec", own)]
    keyboard = [(k, v) for k, v in effects.items() if not k.startswith(PAD_PREFIX)]
    pad = [(k, v) for k, v in effects.items() if k.startswith(PAD_PREFIX)]
    if keyboard:
        out.append(Section("keyboard", _grouped(keyboard)))
    if pad:
        out.append(Section("gamepad", _grouped(pad)))
    if missing:
        out.append(Section("bound, but not in this game", (Entry(tuple(missing), ""),), muted=True))
    return out


def plain_sections(lines: Sequence[str]) -> list[Section]:
    """Help given as ready-made "key: effect" lines (tests, or a resolver without ``describe``)."""
    entries = [Entry((key.strip(),), effect.strip()) for key, _, effect in (line.partition(":") for line in lines)]
    return [Section("gymrec", GYMREC_KEYS), *([Section("keys", tuple(entries))] if entries else [])]


class _Flow:
    """Places words left to right, wrapping at ``width``; an entry's continuation is indented."""

    def __init__(self, font: pygame.font.Font, width: int) -> None:
        self.font, self.width = font, width
        self.labels: list[Label] = []
        self.x = self.y = 0
        self.line = font.get_linesize()
        self.space = font.size(" ")[0]

    def newline(self, extra: int = 0) -> None:
        if self.x:
            self.y += self.line
        self.x = 0
        self.y += extra

    def word(self, text: str, color: tuple[int, int, int], is_key: bool, indent: int, attach: bool = False) -> None:
        """``attach``: no space before (punctuation after a key); never wrapped away from it."""
        w, h = self.font.size(text)
        if attach:
            self.x -= self.space
        elif self.x and self.x + w > self.width:
            self.newline()
            self.x = indent
        self.labels.append(Label(text, color, pygame.Rect(self.x, self.y, w, h), is_key))
        self.x += w + self.space

    def entry(self, entry: Entry, muted: bool) -> None:
        """Keys (each its own label, so its name is drawn exactly as alone), then the effect's words."""
        words: list[tuple[str, bool]] = []
        for i, key in enumerate(entry.keys):
            words.append((key, True))
            if i < len(entry.keys) - 1 or entry.effect:
                words.append(("," if i < len(entry.keys) - 1 else ":", False))
        words += [(w, False) for w in entry.effect.split()]
        needed = sum(self.font.size(t)[0] + self.space for t, _ in words)
        if self.x and self.x + GAP + needed > self.width:
            self.newline()  # start an entry on a fresh line rather than split it, when it fits there
        elif self.x:
            self.x += GAP - self.space
        key_color = MUTED if muted else KEY
        for text, is_key in words:
            attach = text in (",", ":")
            self.word(text, key_color if is_key else (MUTED if muted else TEXT), is_key, self.space * 2, attach)

    def height(self) -> int:
        return self.y + (self.line if self.x else 0)


def layout(font: pygame.font.Font, content: Sequence[Section], width: int) -> tuple[list[Label], pygame.Rect]:
    """Every label of ``content`` wrapped to ``width``; returns the labels and their bounding box."""
    flow = _Flow(font, width)
    for index, section in enumerate(content):
        flow.newline(flow.line // 3 if index else 0)
        flow.word(section.title, HEAD, False, 0)
        flow.newline()
        for entry in section.entries:
            flow.entry(entry, section.muted)
    box = pygame.Rect(0, 0, max((label.rect.right for label in flow.labels), default=0), flow.height())
    return flow.labels, box


@dataclass(frozen=True)
class HelpPanel:
    surface: pygame.Surface
    labels: list[Label]  # rects in panel coordinates, offset by the padding
    font_size: int


def fit(content: Sequence[Section], area: tuple[int, int]) -> HelpPanel:
    """The largest font whose layout fits ``area`` (w, h), rendered; the smallest one if none does."""
    for size in FONT_SIZES:
        font = pygame.font.Font(None, size)
        labels, box = layout(font, content, area[0] - 2 * PAD)
        if box.height + 2 * PAD <= area[1] or size == FONT_SIZES[-1]:
            return _render(font, labels, box, size)
    raise AssertionError("unreachable: the smallest font is always used")


def _render(font: pygame.font.Font, labels: list[Label], box: pygame.Rect, size: int) -> HelpPanel:
    surface = pygame.Surface((box.width + 2 * PAD, box.height + 2 * PAD), pygame.SRCALPHA)
    surface.fill(SHADE)
    placed = []
    for label in labels:
        rect = label.rect.move(PAD, PAD)
        surface.blit(font.render(label.text, True, label.color), rect)
        placed.append(Label(label.text, label.color, rect, label.is_key))
    return HelpPanel(surface, placed, size)
