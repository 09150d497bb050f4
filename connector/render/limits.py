"""Fitting a rendered package into Jira's description limit.

Jira refuses a description over 32,767 characters. Jira is Java, so a "character" is a UTF-16 code unit:
an emoji counts twice. Truncation keeps the start of the package (title, severity and routing come first),
never cuts through a piece of markup, and ends with a paragraph pointing to the full package.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.render.adf import Node, inline_nodes, paragraph
from connector.render.jira_wiki import render_paragraph
from rules.document import Line, Link, Text

JIRA_TEXT_LIMIT = 32_767
ELLIPSIS = "…"

# URLs in the pointer become links; punctuation closing the sentence or a bracket is not part of them.
_URL = re.compile(r"(?:https?://|mailto:)[^\s<>\"]+?(?=[.,;:!?)\]}>'\"]*(?:\s|$))")
# Wiki markup that must not be cut through: a forced line break with its space, an escape, an entity,
# a ``[link]``; anything else is one character.
_WIKI_ATOM = re.compile(
    r"\\\\ |\\[^\\]|&(?:#[0-9]+|#[xX][0-9A-Fa-f]+|[A-Za-z][A-Za-z0-9]*);|\[[^\[\]\n]*\]|.",
    re.DOTALL,
)
# Prefer cutting at a word boundary unless that throws away more than this many characters.
_WORD_SLACK = 200


def jira_length(text: str) -> int:
    """Length as Jira counts it: UTF-16 code units."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def adf_length(doc: Node) -> int:
    # The longest usual serialisation (ASCII-escaped, spaced) so the document fits however it is sent.
    return jira_length(json.dumps(doc))


def pointer_line(pointer: str) -> Line:
    """The pointer as a line of spans, each URL in it as a link."""
    spans: list[Text | Link] = []
    rest = 0
    for match in _URL.finditer(pointer):
        if match.start() > rest:
            spans.append(Text(pointer[rest : match.start()]))
        spans.append(Link(match.group(0), match.group(0)))
        rest = match.end()
    if rest < len(pointer):
        spans.append(Text(pointer[rest:]))
    return tuple(spans)


# --- wiki markup ------------------------------------------------------------------------------------------


def truncate_wiki(text: str, limit: int, pointer: str) -> str:
    """``text`` if it fits in ``limit``, else its longest clean prefix followed by the pointer paragraph."""
    if jira_length(text) <= limit:
        return text
    note = render_paragraph(pointer_line(pointer))
    if jira_length(note) > limit:
        raise ValueError(f"the pointer alone is longer than {limit} characters")
    boundaries = [m.start() for m in _WIKI_ATOM.finditer(text)]
    words = [i for i in boundaries if text[i].isspace()]

    def fits(cut: int) -> bool:
        return jira_length(_assemble_wiki(text[:cut], note)) <= limit

    best_any = _largest(boundaries, fits)
    best_word = _largest(words, fits)
    cut = best_word if best_word >= best_any - _WORD_SLACK else best_any
    return _assemble_wiki(text[:cut], note)


def _assemble_wiki(kept: str, note: str) -> str:
    kept = kept.rstrip()
    if not kept:
        return note
    # A cut inside ``{quote}`` … ``{quote}`` must close the block, or the pointer would be quoted too.
    if sum(line.strip() == "{quote}" for line in kept.split("\n")) % 2:
        kept += f" {ELLIPSIS}\n{{quote}}"
    else:
        kept += f" {ELLIPSIS}"
    return f"{kept}\n\n{note}"


def _largest(candidates: list[int], fits: Callable[[int], bool]) -> int:
    """The largest candidate that fits (0 if none); candidates are sorted and fitting is monotone."""
    lo, hi, best = 0, len(candidates) - 1, 0
    while lo <= hi:
        mid = (lo + hi) // 2
        if fits(candidates[mid]):
            best, lo = candidates[mid], mid + 1
        else:
            hi = mid - 1
    return best


# --- ADF --------------------------------------------------------------------------------------------------


def truncate_adf(doc: Node, limit: int, pointer: str) -> Node:
    """``doc`` if its JSON fits in ``limit``, else its longest prefix (by text) ending with the pointer."""
    if adf_length(doc) <= limit:
        return doc
    note = paragraph(inline_nodes(pointer_line(pointer)))
    total = sum(len(n["text"]) for n in _walk(doc) if n.get("type") == "text")

    def build(chars: int) -> Node:
        pruned = _prune(doc, _Budget(chars)) or {**doc, "content": []}
        return {**pruned, "content": [*pruned.get("content", []), note]}

    if adf_length(build(0)) > limit:
        raise ValueError(f"the pointer alone does not fit in {limit} characters")
    best = _largest(list(range(total + 1)), lambda chars: adf_length(build(chars)) <= limit)
    return build(best)


@dataclass
class _Budget:
    chars: int


def _prune(node: Node, budget: _Budget) -> Node | None:
    """A copy of ``node`` keeping the first ``budget.chars`` characters of text, in document order."""
    if budget.chars <= 0:
        return None
    if node.get("type") == "text":
        return _prune_text(node, budget)
    if "content" not in node:
        return node
    content = []
    for child in node["content"]:
        kept = _prune(child, budget)
        if kept is None:
            break
        content.append(kept)
    if not content and node.get("content") and node.get("type") != "doc":
        # An emptied container would be invalid (lists, quotes) or an empty line: drop it.
        return None
    return {**node, "content": content}


def _prune_text(node: Node, budget: _Budget) -> Node:
    text: str = node["text"]
    if len(text) <= budget.chars:
        budget.chars -= len(text)
        return node
    kept = text[: budget.chars]
    budget.chars = 0
    return {**node, "text": kept.rstrip() + ELLIPSIS}


def _walk(node: Any) -> list[Node]:
    found = [node] if isinstance(node, dict) else []
    for child in node.get("content", []) if isinstance(node, dict) else []:
        found.extend(_walk(child))
    return found
