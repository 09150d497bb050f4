"""How strictly the sandbox Jira reads an ADF document (REST v3 ``description`` and comment ``body``).

Independent of the renderer's own validator on purpose: a test that sends ADF through the connector and
has it accepted here has been checked by a second reading of the format. Covers the structure rules of
https://developer.atlassian.com/cloud/jira/platform/apis/document/structure/ that matter for what we
send: the root, block versus inline content, lists, tables, text and marks.
"""

from __future__ import annotations

from typing import Any

BLOCKS = {
    "paragraph": "inline",
    "heading": "inline",
    "codeBlock": "text",
    "blockquote": "block",
    "bulletList": "listItem",
    "orderedList": "listItem",
    "listItem": "block",
    "rule": None,
    "panel": "block",
    "table": "tableRow",
    "tableRow": "cell",
    "tableHeader": "block",
    "tableCell": "block",
    "mediaSingle": "media",
    "mediaGroup": "media",
    "expand": "block",
}
INLINE = {"text", "hardBreak", "mention", "emoji", "inlineCard", "date", "status"}
MARKS = {"strong", "em", "code", "link", "strike", "underline", "subsup", "textColor", "backgroundColor"}
TOP_LEVEL_FORBIDDEN = {"listItem", "tableRow", "tableHeader", "tableCell"}


def adf_errors(doc: Any) -> list[str]:
    if not isinstance(doc, dict) or doc.get("type") != "doc":
        return ["root: must be an object with type 'doc'"]
    errors: list[str] = []
    if doc.get("version") != 1:
        errors.append("root: version must be 1")
    content = doc.get("content")
    if not isinstance(content, list):
        return [*errors, "root: content must be a list"]
    for i, node in enumerate(content):
        where = f"content[{i}]"
        if isinstance(node, dict) and node.get("type") in TOP_LEVEL_FORBIDDEN:
            errors.append(f"{where}: {node.get('type')} cannot be at the top level")
        _block(node, where, errors)
    return errors


def _block(node: Any, where: str, errors: list[str]) -> None:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        errors.append(f"{where}: a node must be an object with a string type")
        return
    kind = node["type"]
    if kind not in BLOCKS:
        errors.append(f"{where}: {kind!r} is not a block node")
        return
    if kind == "heading" and node.get("attrs", {}).get("level") not in range(1, 7):
        errors.append(f"{where}: a heading needs attrs.level 1-6")
    children = node.get("content", [])
    if not isinstance(children, list):
        errors.append(f"{where}: content must be a list")
        return
    expected = BLOCKS[kind]
    if expected is None and children:
        errors.append(f"{where}: {kind} has no content")
    if kind in ("bulletList", "orderedList", "table", "tableRow", "listItem") and not children:
        errors.append(f"{where}: {kind} cannot be empty")
    for i, child in enumerate(children):
        here = f"{where}.content[{i}]"
        if expected in ("inline", "text"):
            _inline(child, here, errors, text_only=expected == "text")
        elif expected == "listItem":
            _expect(child, {"listItem"}, here, errors) and _block(child, here, errors)
        elif expected == "tableRow":
            _expect(child, {"tableRow"}, here, errors) and _block(child, here, errors)
        elif expected == "cell":
            _expect(child, {"tableHeader", "tableCell"}, here, errors) and _block(child, here, errors)
        elif expected == "media":
            _expect(child, {"media"}, here, errors)
        else:
            _block(child, here, errors)


def _expect(node: Any, kinds: set[str], where: str, errors: list[str]) -> bool:
    if isinstance(node, dict) and node.get("type") in kinds:
        return True
    errors.append(f"{where}: expected {' or '.join(sorted(kinds))}")
    return False


def _inline(node: Any, where: str, errors: list[str], *, text_only: bool) -> None:
    if not isinstance(node, dict) or node.get("type") not in INLINE:
        errors.append(f"{where}: expected an inline node")
        return
    if text_only and node["type"] != "text":
        errors.append(f"{where}: only text is allowed here")
    if node["type"] == "text":
        if not isinstance(node.get("text"), str) or not node["text"]:
            errors.append(f"{where}: text must be a non-empty string")
        for j, mark in enumerate(node.get("marks", [])):
            if not isinstance(mark, dict) or mark.get("type") not in MARKS:
                errors.append(f"{where}.marks[{j}]: unknown mark")
            elif mark["type"] == "link" and not str(mark.get("attrs", {}).get("href", "")):
                errors.append(f"{where}.marks[{j}]: a link needs attrs.href")


def adf_text(node: Any) -> str:
    """The document's text, blocks separated by blank lines (what a v2 read shows of an ADF field)."""
    if not isinstance(node, dict):
        return ""
    if node.get("type") == "text":
        return str(node.get("text", ""))
    if node.get("type") == "hardBreak":
        return "\n"
    parts = [adf_text(c) for c in node.get("content", []) if isinstance(c, dict)]
    joiner = (
        "\n\n"
        if node.get("type") in ("doc", "blockquote", "listItem", "tableCell", "panel")
        else ("\n" if node.get("type") in ("bulletList", "orderedList", "table", "tableRow") else "")
    )
    return joiner.join(p for p in parts if p)
