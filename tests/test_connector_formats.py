"""Formats at the connector's edge: descriptions fitted to Jira's limit (the renderer's cut and the
fallback behind it) and HTML made safe for a Zendesk note."""

from __future__ import annotations

import pytest

from connector import jira_description as jd
from connector.sandbox.adf_check import adf_errors
from connector.zendesk_html import link_html, sanitize_html, text_to_html

URL = "https://escalate.example/packages/9"


def doc(*texts: str) -> dict:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": t}]} for t in texts],
    }


@pytest.fixture(params=["renderer", "fallback"])
def cutter(request, monkeypatch):
    """Run each test with connector.render.limits and with the fallback used while it is absent."""
    if request.param == "fallback":
        monkeypatch.setattr(jd, "_render_truncate_wiki", None)
        monkeypatch.setattr(jd, "_render_truncate_adf", None)
        monkeypatch.setattr(jd, "_render_adf_length", None)
        monkeypatch.setattr(jd, "_render_validate_adf", None)
    return request.param


def test_short_descriptions_are_untouched(cutter):
    assert jd.fit_wiki("h2. Fine", URL) == "h2. Fine"
    assert jd.fit_adf(doc("fine"), URL) == doc("fine")


def test_wiki_is_cut_to_the_limit_with_the_pointer(cutter):
    text = "".join(f"line {i}: something happened\n" for i in range(3000))
    cut = jd.fit_wiki(text, URL)
    assert jd.jira_length(cut) <= jd.JIRA_TEXT_LIMIT
    assert cut.startswith("line 0: something happened")
    assert URL in cut.splitlines()[-1]


def test_wiki_limit_counts_utf16_units(cutter):
    text = "😀" * 20_000  # 40,000 UTF-16 units in 20,000 characters
    cut = jd.fit_wiki(text, None)
    assert jd.jira_length(cut) <= jd.JIRA_TEXT_LIMIT
    assert "linked Zendesk ticket" in cut


def test_adf_is_cut_to_a_valid_document_with_the_pointer(cutter):
    cut = jd.fit_adf(doc(*("p" * 500 for _ in range(100))), URL)
    assert adf_errors(cut) == [] and jd.adf_size(cut) <= jd.JIRA_TEXT_LIMIT
    assert URL in str(cut["content"][-1])


def test_a_single_huge_adf_block_is_cut_too(cutter):
    cut = jd.fit_adf(doc("q" * 50_000), URL)
    assert adf_errors(cut) == [] and jd.adf_size(cut) <= jd.JIRA_TEXT_LIMIT


def test_a_failing_renderer_falls_back(monkeypatch):
    def broken(*args):
        raise ValueError("renderer bug")

    monkeypatch.setattr(jd, "_render_truncate_wiki", broken)
    monkeypatch.setattr(jd, "_render_truncate_adf", broken)
    assert jd.jira_length(jd.fit_wiki("w" * 40_000, URL)) <= jd.JIRA_TEXT_LIMIT
    assert jd.adf_size(jd.fit_adf(doc("a" * 40_000), URL)) <= jd.JIRA_TEXT_LIMIT


@pytest.mark.parametrize(
    "bad",
    [
        None,
        {"type": "paragraph"},
        {"type": "doc", "version": 2, "content": []},
        {
            "type": "doc",
            "version": 1,
            "content": [{"type": "paragraph", "content": [{"type": "text", "text": ""}]}],
        },
    ],
)
def test_adf_problems_are_found(cutter, bad):
    assert jd.adf_problems(bad)


def test_adf_from_text_is_valid():
    built = jd.adf_from_text("first\n\nsecond")
    assert adf_errors(built) == [] and len(built["content"]) == 2
    assert adf_errors(jd.adf_from_text("")) == []


@pytest.mark.parametrize(
    ("dirty", "clean"),
    [
        ("<p>fine <b>bold</b></p>", "<p>fine <b>bold</b></p>"),
        ("<script>alert(1)</script>ok", "ok"),
        ('<img src=x onerror="alert(1)">pic', "pic"),
        ('<a href="javascript:alert(1)">x</a>', "<a>x</a>"),
        (
            '<a href="https://ok.example/?a=1&b=2" onclick="x()">y</a>',
            '<a href="https://ok.example/?a=1&amp;b=2" rel="noopener noreferrer">y</a>',
        ),
        ("<p>unclosed <em>text", "<p>unclosed <em>text</em></p>"),
        ("a < b & c", "a &lt; b &amp; c"),
        ("<style>p{}</style><iframe src=x></iframe>gone", "gone"),
    ],
)
def test_sanitize_html(dirty, clean):
    assert sanitize_html(dirty) == clean


def test_text_and_links():
    assert text_to_html("x <y>\nz\n\nw") == "<p>x &lt;y&gt;<br>z</p><p>w</p>"
    assert (
        link_html("https://j.example/browse/A-1", "A-1") == '<a href="https://j.example/browse/A-1">A-1</a>'
    )
    assert link_html("javascript:alert(1)", "<A-1>") == "&lt;A-1&gt;"
