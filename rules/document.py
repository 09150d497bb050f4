"""A small, format-neutral document: what the package is written as before a renderer turns it into
Markdown, Jira wiki markup, ADF or Zendesk HTML.

Every piece of text here is plain text taken as-is (ticket text included); escaping for a target format is
the renderer's job and only the renderer's. That is what keeps ticket text inert in every format.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Text:
    text: str
    bold: bool = False
    code: bool = False


@dataclass(frozen=True)
class Link:
    text: str
    # Only http(s) and mailto URLs are rendered as links; renderers show anything else as text.
    url: str


Span = Text | Link
Line = tuple[Span, ...]


@dataclass(frozen=True)
class Paragraph:
    spans: Line


@dataclass(frozen=True)
class BulletList:
    items: tuple[Line, ...]


@dataclass(frozen=True)
class OrderedList:
    items: tuple[Line, ...]


@dataclass(frozen=True)
class Quote:
    """Text quoted verbatim from the ticket, kept with its line breaks."""

    text: str


Block = Paragraph | BulletList | OrderedList | Quote


@dataclass(frozen=True)
class Section:
    heading: str
    blocks: tuple[Block, ...] = ()


@dataclass(frozen=True)
class Document:
    title: str
    sections: tuple[Section, ...] = field(default_factory=tuple)


def line(*parts: str | Span) -> Line:
    """Build a line from strings and spans: ``line(Text("Severity: ", bold=True), "high")``."""
    return tuple(Text(p) if isinstance(p, str) else p for p in parts)


def labelled(label: str, value: str | Span) -> Line:
    return line(Text(f"{label}: ", bold=True), value)


SAFE_URL_SCHEMES = ("http://", "https://", "mailto:")


def is_safe_url(url: str) -> bool:
    return url.strip().lower().startswith(SAFE_URL_SCHEMES)


# C0/C1 control characters (tab excepted) and lone surrogates: invisible in every target, refused by some
# (a lone surrogate cannot be encoded as UTF-8, so it would fail the HTTP request, not just the render).
_UNPRINTABLE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")


def plain_text(text: str) -> str:
    """Ticket text with every kind of line break as ``\\n`` and unprintable characters removed.

    Renderers split on ``\\n`` only; a target may treat ``\\r``, U+2028 and friends as line starts too
    (Java regexes do), so every renderer must see the same line breaks the target will.
    """
    return _UNPRINTABLE.sub("", "\n".join(text.splitlines()))
