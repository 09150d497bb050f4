"""The package as Atlassian Document Format v1 (Jira Cloud, REST v3), and a structural check of ADF.

ADF is a JSON tree, so ticket text never needs escaping: it only ever becomes the ``text`` of a text node,
and text that looks like ADF JSON is just a string there. What can go wrong is structure, which Jira refuses
with a 400: empty text nodes, a node where its parent does not allow it, marks that do not combine.
``validate_adf`` checks the subset of the ADF spec this project produces (developer.atlassian.com, "Atlassian
Document Format" node and mark reference); anything outside that subset is reported, not guessed at.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
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

Node = dict[str, Any]

_INLINE = frozenset({"text", "hardBreak"})
_LIST_ITEM_CONTENT = frozenset({"paragraph", "bulletList", "orderedList", "codeBlock"})
# Allowed children of each node type this project knows; leaves map to an empty set.
CHILDREN: dict[str, frozenset[str]] = {
    "doc": frozenset(
        {"paragraph", "heading", "bulletList", "orderedList", "blockquote", "codeBlock", "rule"}
    ),
    "paragraph": _INLINE,
    "heading": _INLINE,
    "bulletList": frozenset({"listItem"}),
    "orderedList": frozenset({"listItem"}),
    "listItem": _LIST_ITEM_CONTENT,
    # Headings and nested blockquotes are not allowed in a blockquote.
    "blockquote": frozenset({"paragraph", "bulletList", "orderedList", "codeBlock"}),
    "codeBlock": frozenset({"text"}),
    "text": frozenset(),
    "hardBreak": frozenset(),
    "rule": frozenset(),
}
# Containers that the spec requires to hold at least one child.
_NON_EMPTY = frozenset({"bulletList", "orderedList", "listItem", "blockquote"})
# Marks: code combines with link only; the formatting marks combine with each other and with link.
_CODE_COMPATIBLE = frozenset({"code", "link"})
_FORMATTING = frozenset({"strong", "em", "strike", "underline", "link"})
MARKS = _CODE_COMPATIBLE | _FORMATTING
# An href must be a URI: RFC 3986 reserved and unreserved characters stay, anything else is percent-encoded.
_URL_SAFE = "-._~:/?#[]@!$&'()*+,;=%"


def render_adf(doc: Document) -> Node:
    content = [_heading(1, doc.title)]
    for section in doc.sections:
        content.append(_heading(2, section.heading))
        content.extend(node for block in section.blocks for node in _block(block))
    return {"type": "doc", "version": 1, "content": content}


def text_node(text: str, marks: list[Node] | None = None) -> Node:
    node: Node = {"type": "text", "text": text}
    if marks:
        node["marks"] = marks
    return node


def paragraph(inline: list[Node]) -> Node:
    return {"type": "paragraph", "content": inline}


def inline_nodes(spans: Line) -> list[Node]:
    """The inline nodes for one line of spans, e.g. for a paragraph appended after rendering."""
    return _inline(spans)


def _heading(level: int, text: str) -> Node:
    # A heading is one line; a hard break inside it would read as two headings.
    one_line = " ".join(plain_text(text).split())
    return {"type": "heading", "attrs": {"level": level}, "content": _texts(one_line)}


def _block(block: Block) -> list[Node]:
    if isinstance(block, Paragraph):
        inline = _inline(block.spans)
        return [paragraph(inline)] if inline else []
    if isinstance(block, BulletList | OrderedList):
        kind = "bulletList" if isinstance(block, BulletList) else "orderedList"
        items = [{"type": "listItem", "content": [paragraph(_inline(item))]} for item in block.items]
        return [{"type": kind, "content": items}] if items else []
    if isinstance(block, Quote):
        inline = _texts(plain_text(block.text).strip("\n"))
        return [{"type": "blockquote", "content": [paragraph(inline)]}] if inline else []
    raise TypeError(f"unknown block {type(block).__name__}")


def _inline(spans: Line) -> list[Node]:
    return [node for span in spans for node in _span(span)]


def _span(span: Text | Link) -> list[Node]:
    if isinstance(span, Link):
        text = span.text or span.url
        if not is_safe_url(span.url):
            shown = text if text == span.url else f"{text} ({span.url})"
            return _texts(shown)
        href = quote(plain_text(span.url).strip(), safe=_URL_SAFE)
        return _texts(text, [{"type": "link", "attrs": {"href": href}}])
    if span.code:
        # Inline code is one line: a hardBreak would split the code mark anyway.
        return _texts(" ".join(plain_text(span.text).split("\n")), [{"type": "code"}])
    return _texts(span.text, [{"type": "strong"}] if span.bold else None)


def _texts(text: str, marks: list[Node] | None = None) -> list[Node]:
    """Text nodes for ``text`` with line breaks as hardBreak nodes; never an empty text node."""
    nodes: list[Node] = []
    for i, line in enumerate(plain_text(text).split("\n")):
        if i:
            nodes.append({"type": "hardBreak"})
        if line:
            nodes.append(text_node(line, [dict(mark) for mark in marks] if marks else None))
    return nodes


# --- validation -------------------------------------------------------------------------------------------


def validate_adf(node: Any) -> list[str]:
    """Structural problems of an ADF document, each as ``path: problem``; an empty list means valid."""
    if not isinstance(node, dict):
        return ["$: document is not an object"]
    problems = []
    if node.get("type") != "doc":
        problems.append("$: root node is not of type doc")
    if node.get("version") != 1:
        problems.append("$: doc version is not 1")
    if not isinstance(node.get("content"), list):
        problems.append("$: doc has no content list")
    return problems + list(_check(node, "$", parent=None))


def _check(node: Any, path: str, parent: str | None) -> Iterator[str]:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        yield f"{path}: node is not an object with a string type"
        return
    kind = node["type"]
    if kind not in CHILDREN:
        yield f"{path}: unsupported node type {kind!r}"
        return
    if parent is not None and kind not in CHILDREN[parent]:
        yield f"{path}: {kind} is not allowed in {parent}"
    if kind == "doc" and parent is not None:
        yield f"{path}: doc is only allowed at the root"
    yield from _check_attrs(node, path)
    yield from _check_marks(node, path, parent)
    yield from _check_content(node, path)


def _check_attrs(node: Node, path: str) -> Iterator[str]:
    kind, attrs = node["type"], node.get("attrs")
    if attrs is not None and not isinstance(attrs, dict):
        yield f"{path}: attrs is not an object"
        return
    attrs = attrs or {}
    if kind == "heading":
        level = attrs.get("level")
        if type(level) is not int or not 1 <= level <= 6:
            yield f"{path}: heading level must be an integer from 1 to 6, got {level!r}"
    if kind == "orderedList" and "order" in attrs:
        order = attrs["order"]
        if type(order) is not int or order < 0:
            yield f"{path}: orderedList order must be a non-negative integer, got {order!r}"
    if kind == "text":
        text = node.get("text")
        if not isinstance(text, str) or not text:
            yield f"{path}: text node needs a non-empty text string"


def _check_marks(node: Node, path: str, parent: str | None) -> Iterator[str]:
    marks = node.get("marks")
    if marks is None:
        return
    if node["type"] != "text":
        yield f"{path}: {node['type']} takes no marks"
        return
    if not isinstance(marks, list) or not all(isinstance(m, dict) for m in marks):
        yield f"{path}: marks is not a list of objects"
        return
    if parent == "codeBlock" and marks:
        yield f"{path}: text in a codeBlock takes no marks"
    types = [mark.get("type") for mark in marks]
    for i, mark in enumerate(marks):
        yield from _check_mark(mark, f"{path}.marks[{i}]")
    if len(set(types)) != len(types):
        yield f"{path}: a mark type appears twice"
    present = set(types) & MARKS
    if "code" in present and not present <= _CODE_COMPATIBLE:
        yield f"{path}: code mark combines only with link, got {sorted(present)}"


def _check_mark(mark: Node, path: str) -> Iterator[str]:
    kind = mark.get("type")
    if kind not in MARKS:
        yield f"{path}: unsupported mark {kind!r}"
    elif kind == "link":
        href = (mark.get("attrs") or {}).get("href")
        if not isinstance(href, str) or not href:
            yield f"{path}: link mark needs attrs.href"
        elif not is_safe_url(href):
            # ADF itself allows any URI; this project only ever links http(s) and mailto.
            yield f"{path}: link href is not an http(s) or mailto URL"


def _check_content(node: Node, path: str) -> Iterator[str]:
    kind, content = node["type"], node.get("content")
    if content is None:
        if kind in _NON_EMPTY or kind == "doc":
            yield f"{path}: {kind} needs content"
        return
    if not isinstance(content, list):
        yield f"{path}: content is not a list"
        return
    if not CHILDREN[kind] and content:
        yield f"{path}: {kind} takes no content"
        return
    if kind in _NON_EMPTY and not content:
        yield f"{path}: {kind} needs at least one child"
    first = content[0] if content and isinstance(content[0], dict) else {}
    if kind == "listItem" and first.get("type") in ("bulletList", "orderedList"):
        yield f"{path}: a listItem cannot start with a nested list"
    for i, child in enumerate(content):
        yield from _check(child, f"{path}.content[{i}]", parent=kind)
