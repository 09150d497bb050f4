"""The package as HTML for a Zendesk internal note (``comment.html_body``).

All document text goes through ``html.escape`` (quotes included, so it is safe in attribute values too); the
only tags in the output are the ones written here. Zendesk sanitises ``html_body`` as well, but that is its
defence, not ours.
"""

from __future__ import annotations

from html import escape
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

# Every tag this renderer writes; the tests hold the output to this set.
# RFC 3986 reserved and unreserved characters stay; spaces, quotes, braces and the like are percent-encoded.
_URL_SAFE = "-._~:/?#[]@!$&'()*+,;=%"
TAGS = frozenset({"h1", "h2", "p", "ul", "ol", "li", "blockquote", "strong", "code", "a", "br"})


def render_html(doc: Document) -> str:
    parts = [f"<h1>{_one_line(doc.title)}</h1>"]
    for section in doc.sections:
        parts.append(f"<h2>{_one_line(section.heading)}</h2>")
        parts.extend(_block(block) for block in section.blocks)
    return "\n".join(part for part in parts if part) + "\n"


def _one_line(text: str) -> str:
    return escape(" ".join(plain_text(text).split()))


def _text(text: str) -> str:
    return "<br>".join(escape(line) for line in plain_text(text).split("\n"))


def _block(block: Block) -> str:
    if isinstance(block, Paragraph):
        inner = _line(block.spans)
        return f"<p>{inner}</p>" if inner else ""
    if isinstance(block, BulletList):
        return _list("ul", block.items)
    if isinstance(block, OrderedList):
        return _list("ol", block.items)
    if isinstance(block, Quote):
        inner = _text(plain_text(block.text).strip("\n"))
        return f"<blockquote><p>{inner}</p></blockquote>" if inner else ""
    raise TypeError(f"unknown block {type(block).__name__}")


def _list(tag: str, items: tuple[Line, ...]) -> str:
    if not items:
        return ""
    return f"<{tag}>" + "".join(f"<li>{_line(item)}</li>" for item in items) + f"</{tag}>"


def _line(spans: Line) -> str:
    return "".join(_span(span) for span in spans)


def _span(span: Text | Link) -> str:
    if isinstance(span, Link):
        return _link(span)
    if span.code:
        return f"<code>{_text(span.text)}</code>" if span.text else ""
    if span.bold:
        return f"<strong>{_text(span.text)}</strong>" if span.text else ""
    return _text(span.text)


def _link(link: Link) -> str:
    text = link.text or link.url
    if not is_safe_url(link.url):
        return _text(text if text == link.url else f"{text} ({link.url})")
    href = escape(quote(plain_text(link.url).strip(), safe=_URL_SAFE), quote=True)
    return f'<a href="{href}" rel="noopener noreferrer">{_text(text)}</a>'
