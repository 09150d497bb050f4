"""Fit an issue description into Jira's limit instead of having the create refused.

Jira refuses a description over 32,767 characters (DESIGN.md). For wiki markup the limit is on the text;
for ADF we count the compact JSON serialisation, which is at least as long as anything Jira could be
measuring, so a document that passes here passes there.

The cutting itself belongs to ``connector.render.limits`` (``truncate_wiki``, ``truncate_adf``) and the
ADF check to ``connector.render.adf.validate_adf``; while those modules are absent, the small fallbacks
below keep the same signatures. Whatever the renderer returns is measured again here, and cut harder if
it is still too long: "never refused" is this module's promise, not the renderer's.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

JIRA_TEXT_LIMIT = 32_767

try:  # the renderer's versions, when present
    from connector.render.limits import adf_length as _render_adf_length
    from connector.render.limits import truncate_adf as _render_truncate_adf
    from connector.render.limits import truncate_wiki as _render_truncate_wiki
except ImportError:  # pragma: no cover - depends on what is installed alongside
    _render_adf_length = None
    _render_truncate_adf = None
    _render_truncate_wiki = None

try:
    from connector.render.adf import validate_adf as _render_validate_adf
except ImportError:  # pragma: no cover
    _render_validate_adf = None


def pointer_text(full_package_url: str | None) -> str:
    where = (
        f"the full escalation package is at {full_package_url}"
        if full_package_url
        else ("the full escalation package is on the linked Zendesk ticket")
    )
    return f"Description shortened to fit Jira's {JIRA_TEXT_LIMIT:,}-character limit; {where}"


def adf_size(doc: dict[str, Any]) -> int:
    """The document's length as the renderer measures it (the longest usual serialisation, in UTF-16
    code units, as Java counts), else its ASCII-escaped JSON: either way at least what Jira counts."""
    if _render_adf_length is not None:
        return _render_adf_length(doc)
    return len(json.dumps(doc))


def jira_length(text: str) -> int:
    """Length as Jira (Java) counts it: UTF-16 code units, so an emoji counts twice."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def fit_wiki(text: str, full_package_url: str | None, limit: int = JIRA_TEXT_LIMIT) -> str:
    if jira_length(text) <= limit:
        return text
    pointer = pointer_text(full_package_url)
    if _render_truncate_wiki is not None:
        cut = _call(_render_truncate_wiki, text, limit, pointer)
        if isinstance(cut, str) and jira_length(cut) <= limit:
            return cut
    return _cut_wiki(text, limit, pointer)


def fit_adf(
    doc: dict[str, Any], full_package_url: str | None, limit: int = JIRA_TEXT_LIMIT
) -> dict[str, Any]:
    if adf_size(doc) <= limit:
        return doc
    pointer = pointer_text(full_package_url)
    if _render_truncate_adf is not None:
        cut = _call(_render_truncate_adf, doc, limit, pointer)
        if isinstance(cut, dict) and adf_size(cut) <= limit:
            return cut
    return _cut_adf(doc, limit, pointer, full_package_url)


def adf_problems(doc: Any) -> list[str]:
    """What makes ``doc`` an ADF document Jira Cloud would refuse; empty when it looks well formed."""
    if _render_validate_adf is not None:
        return list(_render_validate_adf(doc))
    return _basic_adf_problems(doc)


def adf_from_text(text: str) -> dict[str, Any]:
    """A plain ADF document, one paragraph per block of text: the fallback when a renderer's ADF is bad."""
    blocks = [b.strip() for b in text.replace("\r\n", "\n").split("\n\n") if b.strip()]
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": b}]} for b in blocks]
        or [{"type": "paragraph", "content": []}],
    }


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception:  # a renderer bug must not stop the escalation; the fallback still cuts
        log.exception("description truncation by the renderer failed; using the fallback")
        return None


def _cut_wiki(text: str, limit: int, pointer: str) -> str:
    room = max(0, limit - jira_length(pointer) - 2)
    head = text[:room]
    while jira_length(head) > room:  # characters outside the BMP count twice
        head = head[: len(head) - (jira_length(head) - room + 1) // 2 - 1]
    newline = head.rfind("\n")
    if newline > room * 0.8:  # end on a whole line when that costs little
        head = head[:newline]
    return head.rstrip() + "\n\n" + pointer


def _pointer_paragraph(pointer: str, url: str | None) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": pointer}
    if url and url.startswith(("http://", "https://")):
        node["marks"] = [{"type": "link", "attrs": {"href": url}}]
    return {"type": "paragraph", "content": [node]}


def _cut_adf(doc: dict[str, Any], limit: int, pointer: str, url: str | None) -> dict[str, Any]:
    tail = _pointer_paragraph(pointer, url)
    kept: list[Any] = []
    for block in doc.get("content") or []:
        candidate = {**doc, "content": [*kept, block, tail]}
        if adf_size(candidate) > limit:
            break
        kept.append(block)
    result = {**doc, "content": [*kept, tail]}
    if kept or adf_size(result) <= limit:
        return result
    # Even the first block is too long on its own: keep its text, as plain paragraphs, cut to fit.
    text = _plain_text(doc)
    budget = limit - adf_size({"type": "doc", "version": 1, "content": [tail]}) - 64
    while budget > 0:
        result = {"type": "doc", "version": 1, "content": [*adf_from_text(text[:budget])["content"], tail]}
        if adf_size(result) <= limit:
            return result
        budget -= max(64, adf_size(result) - limit)
    return {"type": "doc", "version": 1, "content": [tail]}


def _plain_text(node: Any) -> str:
    if isinstance(node, dict):
        if node.get("type") == "text":
            return str(node.get("text") or "")
        joiner = "\n\n" if node.get("type") == "doc" else ""
        return joiner.join(_plain_text(c) for c in node.get("content") or [])
    return ""


def _basic_adf_problems(doc: Any) -> list[str]:
    problems: list[str] = []
    if not isinstance(doc, dict) or doc.get("type") != "doc":
        return ["the root node must be an object of type 'doc'"]
    if doc.get("version") != 1:
        problems.append("the doc must have version 1")
    if not isinstance(doc.get("content"), list):
        problems.append("the doc must have a content list")

    def walk(node: Any, path: str) -> None:
        if not isinstance(node, dict) or not isinstance(node.get("type"), str):
            problems.append(f"{path}: every node needs a string 'type'")
            return
        if node["type"] == "text" and not (isinstance(node.get("text"), str) and node["text"]):
            problems.append(f"{path}: a text node needs non-empty 'text'")
        content = node.get("content")
        if content is not None and not isinstance(content, list):
            problems.append(f"{path}: 'content' must be a list")
            return
        for i, child in enumerate(content or []):
            walk(child, f"{path}.content[{i}]")

    for i, child in enumerate(doc.get("content") or []):
        walk(child, f"doc.content[{i}]")
    return problems
