r"""The package as Jira wiki markup (Jira Data Center, and the v2 REST API).

How Jira reads wiki markup, as far as it matters here (Atlassian's "Text Formatting Notation Help", and the
renderer's own escape rule, quoted in Atlassian's wiki-markup parser port @atlaskit/editor-wikimarkup-
transformer: ``(^|(?<!\\))\\([-#*_+?^~|%{}\[\]()!@])``):

* a backslash makes the next character literal only for ``- # * _ + ? ^ ~ | % { } [ ] ( ) ! @``, and only if
  the backslash is not itself preceded by a backslash;
* ``\\`` is a forced line break (unless a backslash follows later in the same word, as in UNC paths);
  a backslash itself cannot be escaped;
* ``h1.``-``h6.``, ``bq.``, ``*``/``#``/``-`` lists, ``|`` tables and ``----`` count at a line start, after
  any leading spaces;
* ``[text|url]`` is found by ``\[[^\[\]\n]+]`` and split at the first ``|`` without regard to escapes.

So: every special character in document text is escaped; a literal backslash is written as the entity
``&#92;`` unless a letter or digit follows it (then it can form neither an escape nor a line break, and stays
readable in every Jira); a text line break becomes the forced line break ``\\`` followed by a space, so
document text never starts a line of its own and the space keeps ``(?!\S*\\)`` from cancelling the break.
Entities (``&#92;``, ``&amp;``) are rendered by Jira Data Center's HTML output; Jira Cloud should be sent ADF.
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

ESCAPABLE = frozenset("-#*_+?^~|%{}[]()!@")
# What Jira would decode as an HTML entity; its ampersand is written as ``&amp;`` so the text shows as typed.
_ENTITY = re.compile(r"&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);")
# Block constructs spelled with letters, which no backslash can escape.
_LETTER_BLOCK_START = re.compile(r"^(\s*)(h(?=[1-6]\.)|b(?=q\.))")
LINE_BREAK = "\\\\ "
# Characters a URL keeps inside ``[text|url]``; the rest are percent-encoded so they cannot end the link,
# open a macro (``{``), an image (``!``), an attachment reference (``^``) or an emoticon (``(y)``).
_URL_SAFE = "-._~:/?#@$&'*+,;=%"
# Characters the link parser does not honour escapes for: link text holding them is written as text + link.
_LINK_TEXT_UNSAFE = frozenset("|[]!")


def render_jira_wiki(doc: Document) -> str:
    parts = [f"h1. {heading_text(doc.title)}"]
    for section in doc.sections:
        parts.append(f"h2. {heading_text(section.heading)}")
        parts.extend(_block(block) for block in section.blocks)
    return "\n\n".join(part for part in parts if part) + "\n"


def escape_text(text: str) -> str:
    """Document text as wiki markup that shows exactly that text (line breaks as forced breaks)."""
    return _SPECIAL.sub(_escaped, plain_text(text))


# Each character that is written otherwise, found in one pass (a package's text is kilobytes): the escapable
# ones, a backslash, a line break, and an ampersand that would start an entity.
_SPECIAL = re.compile("[" + re.escape("".join(sorted(ESCAPABLE))) + r"\\\n]|&(?=" + _ENTITY.pattern[1:] + ")")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in ESCAPABLE:
        return "\\" + char
    if char == "\\":
        # Followed by a letter or digit a backslash is neither an escape nor half of a line break.
        following = match.string[match.end() : match.end() + 1]
        return "\\" if following.isalnum() else "&#92;"
    if char == "\n":
        return LINE_BREAK
    return "&amp;"  # an ampersand before an entity's name


def heading_text(text: str) -> str:
    # A heading is one line: collapse breaks rather than force them.
    return escape_text(" ".join(plain_text(text).split()))


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        return _at_line_start(_line(block.spans))
    if isinstance(block, BulletList):
        return "\n".join(f"* {_line(item)}" for item in block.items)
    if isinstance(block, OrderedList):
        return "\n".join(f"# {_line(item)}" for item in block.items)
    if isinstance(block, Quote):
        return _quote(block.text)
    raise TypeError(f"unknown block {type(block).__name__}")


def render_paragraph(spans: Line) -> str:
    """One paragraph of wiki markup, e.g. a note appended after rendering."""
    return _block(Paragraph(spans))


def _quote(text: str) -> str:
    body = escape_text(text.strip("\n"))
    if not body.strip():
        return ""
    # The body cannot contain ``{quote}``: every brace in it is escaped, so it cannot close the block early.
    return "{quote}\n" + _at_line_start(body) + "\n{quote}"


def _at_line_start(rendered: str) -> str:
    """Keep text that begins a line from reading as ``h1.`` or ``bq.`` (letters cannot be escaped)."""
    return _LETTER_BLOCK_START.sub(lambda m: m.group(1) + f"&#{ord(m.group(2))};", rendered, count=1)


def _line(spans: Line) -> str:
    return "".join(_span(span) for span in spans)


def _span(span: Text | Link) -> str:
    if isinstance(span, Link):
        return _link(span)
    if span.code:
        # ``{{a\}}}`` would close at the first ``}}``; a space keeps the escaped brace inside.
        closing = " }}" if span.text.rstrip().endswith("}") else "}}"
        return _wrapped(span.text, "{{", closing)
    if span.bold:
        return _wrapped(span.text, "*", "*")
    return escape_text(span.text)


def _wrapped(text: str, opening: str, closing: str) -> str:
    body = " ".join(plain_text(text).split())
    if not body:
        return " " * bool(text)
    # ``*x *`` is not bold in Jira: keep surrounding spaces outside the markers.
    lead = " " if text[:1].isspace() else ""
    trail = " " if text[-1:].isspace() else ""
    return f"{lead}{opening}{escape_text(body)}{closing}{trail}"


def _link(link: Link) -> str:
    text = " ".join(plain_text(link.text).split())
    if not is_safe_url(link.url):
        shown = text if text in ("", link.url) else f"{text} ({link.url})"
        return escape_text(shown or link.url)
    url = quote(plain_text(link.url).strip(), safe=_URL_SAFE)
    if not text or text == link.url:
        return f"[{url}]"
    if _LINK_TEXT_UNSAFE.intersection(text):
        return f"{escape_text(text)} [{url}]"
    return f"[{escape_text(text)}|{url}]"
