"""Output formats for the escalation package: one renderer per target, all from ``rules.document``.

``FORMATS`` is what the CLI offers (each returns text; ADF as JSON); ``render`` also knows the Zendesk note.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from connector.render.adf import render_adf, validate_adf
from connector.render.jira_wiki import render_jira_wiki
from connector.render.markdown import render_markdown
from connector.render.zendesk_html import render_html
from rules.document import Document


def render_adf_json(doc: Document) -> str:
    return json.dumps(render_adf(doc), ensure_ascii=False, indent=2) + "\n"


FORMATS: dict[str, Callable[[Document], str]] = {
    "markdown": render_markdown,
    "jira-wiki": render_jira_wiki,
    "adf": render_adf_json,
}
RENDERERS: dict[str, Callable[[Document], str]] = {**FORMATS, "zendesk-html": render_html}


def render(doc: Document, fmt: str) -> str:
    try:
        renderer = RENDERERS[fmt]
    except KeyError:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(RENDERERS)}") from None
    return renderer(doc)


__all__ = [
    "FORMATS",
    "RENDERERS",
    "render",
    "render_adf",
    "render_adf_json",
    "render_html",
    "render_jira_wiki",
    "render_markdown",
    "validate_adf",
]
