"""The package as CommonMark (GitHub-flavoured renderers included).

Every character of document text is made literal: CommonMark lets any ASCII punctuation be backslash-escaped,
so the characters that can start markup anywhere in a line are always escaped, and the ones that only matter
at the start of a line (list markers, setext underlines, ``1.``) are escaped there. Raw HTML cannot survive
because ``<`` is always escaped.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from rules.document import (
    Block,
    BulletList,
    Document,
    Line,
    Link,
    OrderedList,
    Paragraph,
    Quote,
    Text,
    is_safe_url,
    plain_text,
)

# Markup anywhere in a line: emphasis, code, links/images, raw HTML and autolinks, GFM tables and
# strikethrough, math ($) on GitHub, ATX closing hashes in headings, braces for kramdown-style attributes,
# and ``!`` because text ending in ``!`` followed by one of our links would turn the link into an image.
_INLINE_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$!])")
# An entity reference would be decoded (``&lt;`` shows as ``<``); escape the ampersand that starts one.
_ENTITY_START = re.compile(r"&(?=#?[0-9A-Za-z]+;)")
# Block markers that only count at the start of a line (after up to three spaces, which we strip).
_LINE_START_MARKER = re.compile(r"^([-+=>]|\d{1,9}(?=[.)]))")
# A URL goes inside ``( )``: encode whatever could end it or start markup inside it.
_URL_SAFE = "-._~:/?#@!$&'*+,;=%"


def render_markdown(doc: Document) -> str:
    parts = [f"# {_heading_text(doc.title)}"]
    for section in doc.sections:
        parts.append(f"## {_heading_text(section.heading)}")
        parts.extend(_block(block) for block in section.blocks)
    return "\n\n".join(part for part in parts if part) + "\n"


def _heading_text(text: str) -> str:
    # A heading is one line: a line break would end it and start a paragraph.
    return _escape(" ".join(plain_text(text).split()), line_start=True)


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return _line(block.spans, indent="")
    if isinstance(block, BulletList):
        return "\n".join(f"- {_line(item, indent='  ')}" for item in block.items)
    if isinstance(block, OrderedList):
        return "\n".join(_ordered_item(n, item) for n, item in enumerate(block.items, start=1))
    if isinstance(block, Quote):
        return _quote(block.text)
    raise TypeError(f"unknown block {type(block).__name__}")


def _ordered_item(number: int, item: Line) -> str:
    marker = f"{number}. "
    return marker + _line(item, indent=" " * len(marker))


def _quote(text: str) -> str:
    lines = plain_text(text).split("\n")
    out = []
    for i, raw in enumerate(lines):
        if not raw.strip():
            out.append(">")
            continue
        # A trailing backslash is a hard line break; the next line is quoted text too.
        more = i + 1 < len(lines) and bool(lines[i + 1].strip())
        out.append("> " + _escape(raw.strip(), line_start=True) + ("\\" if more else ""))
    return "\n".join(out) if any(line.strip() for line in lines) else ""


def _line(spans: Line, indent: str) -> str:
    parts: list[str] = []
    for span in spans:
        at_start = not "".join(parts).strip()
        parts.append(_span(span, at_start))
    # Text line breaks become hard breaks; continuation lines are indented to stay in a list item.
    return "".join(parts).replace("\n", "\\\n" + indent)


def _span(span: Text | Link, at_start: bool) -> str:
    if isinstance(span, Link):
        return _link(span, at_start)
    if span.code:
        return _code(span.text)
    if span.bold:
        return _bold(span.text, at_start)
    return _text(span.text, line_start=at_start)


def _text(text: str, line_start: bool) -> str:
    lines = [line for line in plain_text(text).split("\n") if line.strip()]
    if not lines:
        # Whitespace only: at a line start it would only indent what follows (4 spaces make a code block).
        return "" if line_start else " " * bool(text)
    # Every line after a break is a line start, whatever the span's position.
    escaped = [_escape(lines[0], line_start)] + [_escape(line, line_start=True) for line in lines[1:]]
    return "\n".join(escaped)


def _escape(text: str, line_start: bool) -> str:
    text = _ENTITY_START.sub(r"\\&", _INLINE_SPECIAL.sub(r"\\\1", text))
    if line_start:
        # Leading spaces would make an indented code block (4+) and are dropped by renderers anyway.
        text = text.lstrip()
        text = _LINE_START_MARKER.sub(_escape_marker, text, count=1)
    return text


def _escape_marker(match: re.Match[str]) -> str:
    marker = match.group(1)
    if marker[0].isdigit():
        # ``12.`` starts an ordered list; escaping the dot after the digits keeps it text.
        return marker + "\\"
    return "\\" + marker


def _bold(text: str, first: bool) -> str:
    body = " ".join(plain_text(text).split())
    if not body:
        return "" if first else " " * bool(text)
    # ``** x**`` is not emphasis: keep the surrounding spaces outside the delimiters.
    lead = " " if text[:1].isspace() and not first else ""
    trail = " " if text[-1:].isspace() else ""
    return f"{lead}**{_escape(body, line_start=False)}**{trail}"


def _code(text: str) -> str:
    body = " ".join(plain_text(text).split("\n"))
    if not body:
        return ""
    # A code span ends at a backtick run of the same length: fence with a longer run than any inside.
    longest = max((len(run) for run in re.findall(r"`+", body)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if body.startswith("`") or body.endswith("`") or body.strip() == "" else ""
    return f"{fence}{pad}{body}{pad}{fence}"


def _link(link: Link, first: bool) -> str:
    text = link.text or link.url
    if not is_safe_url(link.url):
        shown = text if text == link.url else f"{text} ({link.url})"
        return _text(shown, line_start=first)
    url = quote(plain_text(link.url).strip(), safe=_URL_SAFE)
    label = " ".join(plain_text(text).split()) or url
    return f"[{_escape(label, line_start=False)}]({url})"
