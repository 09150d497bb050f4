"""HTML that is safe to post as a Zendesk comment body.

Internal notes carry text that came from customers (ticket excerpts in a package) and from Jira (issue
titles, comments). Zendesk sanitises comment HTML on its side too, but an agent's browser is the last
place to find out that a ``<script>`` or a ``javascript:`` link got through, so notes are reduced here to
an allowlist of formatting tags before they are sent: defence in depth, not the only line.
"""

from __future__ import annotations

import html
from html.parser import HTMLParser
from urllib.parse import urlsplit

ALLOWED_TAGS = frozenset(
    [
        "a",
        "b",
        "blockquote",
        "br",
        "code",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "hr",
        "i",
        "li",
        "ol",
        "p",
        "pre",
        "s",
        "span",
        "strong",
        "sub",
        "sup",
        "table",
        "tbody",
        "td",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    ]
)
VOID_TAGS = frozenset({"br", "hr"})
# Whose content goes too, not only the tag.
DROP_WITH_CONTENT = frozenset(
    {"script", "style", "iframe", "object", "embed", "template", "noscript", "svg", "math"}
)
SAFE_URL_SCHEMES = frozenset({"http", "https", "mailto"})


def text_to_html(text: str) -> str:
    """Plain text as HTML: escaped, blank lines make paragraphs, single newlines make line breaks."""
    paragraphs = [p for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]
    return "".join(
        "<p>" + "<br>".join(html.escape(line) for line in p.strip("\n").split("\n")) + "</p>"
        for p in paragraphs
    )


def link_html(url: str, label: str) -> str:
    """An anchor for a URL we built ourselves (a Jira issue); unsafe schemes become plain text."""
    if urlsplit(url).scheme.lower() not in {"http", "https"}:
        return html.escape(label)
    return f'<a href="{html.escape(url, quote=True)}">{html.escape(label)}</a>'


def sanitize_html(fragment: str) -> str:
    """Keep only allowlisted tags and safe link targets; escape everything else as text."""
    cleaner = _Cleaner()
    cleaner.feed(fragment)
    cleaner.close()
    return cleaner.result()


class _Cleaner(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self._out: list[str] = []
        self._open: list[str] = []
        self._dropping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in DROP_WITH_CONTENT:
            self._dropping += 1
            return
        if self._dropping or tag not in ALLOWED_TAGS:
            return
        kept = ""
        if tag == "a":
            href = dict(attrs).get("href") or ""
            if urlsplit(href.strip()).scheme.lower() in SAFE_URL_SCHEMES:
                kept = f' href="{html.escape(href.strip(), quote=True)}" rel="noopener noreferrer"'
        self._out.append(f"<{tag}{kept}>")
        if tag not in VOID_TAGS:
            self._open.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in VOID_TAGS and not self._dropping:
            self._out.append(f"<{tag}>")

    def handle_endtag(self, tag: str) -> None:
        if tag in DROP_WITH_CONTENT:
            self._dropping = max(0, self._dropping - 1)
            return
        if self._dropping or tag not in self._open:
            return
        # Close whatever was left open inside it, so the output stays well nested.
        while self._open:
            inner = self._open.pop()
            self._out.append(f"</{inner}>")
            if inner == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._dropping:
            self._out.append(html.escape(data, quote=False))

    def result(self) -> str:
        return "".join(self._out) + "".join(f"</{t}>" for t in reversed(self._open))
