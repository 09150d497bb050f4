"""Renderers: exact output for every block and span, hostile ticket text inert in every format, and
Jira's length limit."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connector.render import FORMATS, render, render_adf, validate_adf
from connector.render.jira_wiki import ESCAPABLE, render_jira_wiki
from connector.render.limits import jira_length, truncate_adf, truncate_wiki
from connector.render.markdown import render_markdown
from connector.render.zendesk_html import TAGS, render_html
from rules.document import (
    BulletList,
    Document,
    Link,
    OrderedList,
    Paragraph,
    Quote,
    Section,
    Text,
    is_safe_url,
    labelled,
    line,
    plain_text,
)

DOC = Document(
    title="ESCALATION: Export fails for Acme",
    sections=(
        Section("Severity", (Paragraph(labelled("Severity", "high")),)),
        Section(
            "BUSINESS IMPACT",
            (
                BulletList(
                    (labelled("Affected customers", "Acme"), line("Runs ", Text("export --csv", code=True)))
                ),
                OrderedList((line("Open Reports"), line("Click Export"))),
            ),
        ),
        Section("PROBLEM NARRATIVE", (Quote("It fails.\nEvery time."),)),
        Section(
            "ATTACHMENTS AND REFERENCES",
            (
                Paragraph(
                    line(
                        Link("ZD-101", "https://acme.zendesk.com/agent/tickets/101"),
                        " and ",
                        Link("odd link", "javascript:alert(1)"),
                    )
                ),
            ),
        ),
    ),
)

PAYLOADS = [
    "{code}rm -rf{code}",
    "{noformat}x{noformat} {quote}closed early{quote} {html}<b>x</b>{html}",
    "[link|javascript:alert(1)] [~admin] [^secret.txt]",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    '{"type":"doc","version":1,"content":[{"type":"text","text":"x","marks":[{"type":"link"}]}]}',
    "*bold* _em_ !image.png! {color:red}red{color} ---- | a || b | \\\\ \\{code}",
    "h1. Not a heading\nbq. not a quote\n# not a list\n* nor this\n----",
    "&lt;script&gt; &#60;b&#62; [x](javascript:alert(1)) ![i](https://evil.example/p.png)",
]


def payload_doc(payload: str) -> Document:
    return Document(
        title=f"ESCALATION: {payload}",
        sections=(
            Section(
                payload,
                (
                    Paragraph(line(payload)),
                    Paragraph(line(Text(payload, bold=True), " ", Text(payload, code=True))),
                    BulletList((line(payload),)),
                    OrderedList((line(payload),)),
                    Quote(payload),
                    Paragraph(line(Link(payload, "https://acme.zendesk.com/agent/tickets/1"))),
                    Paragraph(line(Link(payload, payload))),
                ),
            ),
        ),
    )


# --- exact output -----------------------------------------------------------------------------------------


def test_markdown_renders_every_block_and_span() -> None:
    assert render_markdown(DOC) == (
        "# ESCALATION: Export fails for Acme\n\n"
        "## Severity\n\n"
        "**Severity:** high\n\n"
        "## BUSINESS IMPACT\n\n"
        "- **Affected customers:** Acme\n"
        "- Runs `export --csv`\n\n"
        "1. Open Reports\n"
        "2. Click Export\n\n"
        "## PROBLEM NARRATIVE\n\n"
        "> It fails.\\\n"
        "> Every time.\n\n"
        "## ATTACHMENTS AND REFERENCES\n\n"
        "[ZD-101](https://acme.zendesk.com/agent/tickets/101) and odd link (javascript:alert(1))\n"
    )


def test_jira_wiki_renders_every_block_and_span() -> None:
    assert render_jira_wiki(DOC) == (
        "h1. ESCALATION: Export fails for Acme\n\n"
        "h2. Severity\n\n"
        "*Severity:* high\n\n"
        "h2. BUSINESS IMPACT\n\n"
        "* *Affected customers:* Acme\n"
        "* Runs {{export \\-\\-csv}}\n\n"
        "# Open Reports\n"
        "# Click Export\n\n"
        "h2. PROBLEM NARRATIVE\n\n"
        "{quote}\n"
        "It fails.\\\\ Every time.\n"
        "{quote}\n\n"
        "h2. ATTACHMENTS AND REFERENCES\n\n"
        "[ZD\\-101|https://acme.zendesk.com/agent/tickets/101] and odd link \\(javascript:alert\\(1\\)\\)\n"
    )


def test_html_renders_every_block_and_span() -> None:
    assert render_html(DOC) == (
        "<h1>ESCALATION: Export fails for Acme</h1>\n"
        "<h2>Severity</h2>\n"
        "<p><strong>Severity: </strong>high</p>\n"
        "<h2>BUSINESS IMPACT</h2>\n"
        "<ul><li><strong>Affected customers: </strong>Acme</li><li>Runs <code>export --csv</code></li></ul>\n"
        "<ol><li>Open Reports</li><li>Click Export</li></ol>\n"
        "<h2>PROBLEM NARRATIVE</h2>\n"
        "<blockquote><p>It fails.<br>Every time.</p></blockquote>\n"
        "<h2>ATTACHMENTS AND REFERENCES</h2>\n"
        '<p><a href="https://acme.zendesk.com/agent/tickets/101" rel="noopener noreferrer">ZD-101</a>'
        " and odd link (javascript:alert(1))</p>\n"
    )


def _text(value: str, *marks: dict[str, Any]) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "text", "text": value}
    if marks:
        node["marks"] = list(marks)
    return node


def _para(*inline: dict[str, Any]) -> dict[str, Any]:
    return {"type": "paragraph", "content": list(inline)}


def _heading(level: int, value: str) -> dict[str, Any]:
    return {"type": "heading", "attrs": {"level": level}, "content": [_text(value)]}


def _items(*paragraphs: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "listItem", "content": [p]} for p in paragraphs]


STRONG, CODE = {"type": "strong"}, {"type": "code"}


def test_adf_renders_every_block_and_span() -> None:
    link = {"type": "link", "attrs": {"href": "https://acme.zendesk.com/agent/tickets/101"}}
    assert render_adf(DOC) == {
        "type": "doc",
        "version": 1,
        "content": [
            _heading(1, "ESCALATION: Export fails for Acme"),
            _heading(2, "Severity"),
            _para(_text("Severity: ", STRONG), _text("high")),
            _heading(2, "BUSINESS IMPACT"),
            {
                "type": "bulletList",
                "content": _items(
                    _para(_text("Affected customers: ", STRONG), _text("Acme")),
                    _para(_text("Runs "), _text("export --csv", CODE)),
                ),
            },
            {
                "type": "orderedList",
                "content": _items(_para(_text("Open Reports")), _para(_text("Click Export"))),
            },
            _heading(2, "PROBLEM NARRATIVE"),
            {
                "type": "blockquote",
                "content": [_para(_text("It fails."), {"type": "hardBreak"}, _text("Every time."))],
            },
            _heading(2, "ATTACHMENTS AND REFERENCES"),
            _para(_text("ZD-101", link), _text(" and "), _text("odd link (javascript:alert(1))")),
        ],
    }
    assert validate_adf(render_adf(DOC)) == []


def test_formats_return_text_and_render_knows_the_zendesk_note() -> None:
    assert set(FORMATS) == {"markdown", "jira-wiki", "adf"}
    assert json.loads(render(DOC, "adf")) == render_adf(DOC)
    assert render(DOC, "zendesk-html") == render_html(DOC)
    with pytest.raises(ValueError, match="unknown format"):
        render(DOC, "rtf")


def test_empty_blocks_and_spans_render_nothing_invalid() -> None:
    doc = Document(
        "",
        (
            Section(
                "",
                (
                    Paragraph(()),
                    Paragraph(line("", Text("", bold=True), Text("", code=True))),
                    BulletList(()),
                    OrderedList((line(""),)),
                    Quote(""),
                    Quote("\n\n"),
                ),
            ),
        ),
    )
    assert validate_adf(render_adf(doc)) == []
    for fmt in ("markdown", "jira-wiki", "zendesk-html"):
        assert render(doc, fmt).strip()


def _doc(*content: Any) -> dict[str, Any]:
    return {"type": "doc", "version": 1, "content": list(content)}


@pytest.mark.parametrize(
    ("adf", "problem"),
    [
        ({"type": "paragraph"}, "$: root node is not of type doc"),
        ({"type": "doc", "version": 2, "content": []}, "$: doc version is not 1"),
        (_doc(_para(_text(""))), "$.content[0].content[0]: text node needs a non-empty text string"),
        (_doc(_heading(7, "x")), "$.content[0]: heading level must be an integer from 1 to 6, got 7"),
        (
            _doc({"type": "heading", "content": []}),
            "$.content[0]: heading level must be an integer from 1 to 6",
        ),
        (_doc(_text("loose")), "$.content[0]: text is not allowed in doc"),
        (_doc({"type": "blockquote", "content": [_heading(2, "x")]}), "heading is not allowed in blockquote"),
        (
            _doc({"type": "bulletList", "content": [_para(_text("x"))]}),
            "paragraph is not allowed in bulletList",
        ),
        (_doc({"type": "bulletList", "content": []}), "$.content[0]: bulletList needs at least one child"),
        (
            _doc(
                {"type": "bulletList", "content": [{"type": "listItem", "content": [{"type": "bulletList"}]}]}
            ),
            "$.content[0].content[0]: a listItem cannot start with a nested list",
        ),
        (_doc(_para(_text("x", CODE, STRONG))), "code mark combines only with link"),
        (_doc(_para(_text("x", STRONG, STRONG))), "a mark type appears twice"),
        (_doc(_para(_text("x", {"type": "blink"}))), "unsupported mark 'blink'"),
        (
            _doc(_para(_text("x", {"type": "link", "attrs": {"href": "javascript:alert(1)"}}))),
            "link href is not an http(s) or mailto URL",
        ),
        (_doc(_para(_text("x", {"type": "link"}))), "link mark needs attrs.href"),
        (_doc({"type": "extension"}), "$.content[0]: unsupported node type 'extension'"),
        (_doc({"type": "paragraph", "marks": [STRONG], "content": []}), "paragraph takes no marks"),
        (_doc(_para({"type": "hardBreak", "content": [_text("x")]})), "hardBreak takes no content"),
        ("not json", "$: document is not an object"),
    ],
)
def test_validator_reports_structural_problems(adf: Any, problem: str) -> None:
    problems = validate_adf(adf)
    assert any(problem in p for p in problems), problems


def test_validator_accepts_what_the_spec_allows() -> None:
    link = {"type": "link", "attrs": {"href": "mailto:support@example.com"}}
    adf = _doc(
        _para(),
        _para(_text("x", CODE, link), {"type": "hardBreak"}, _text("y", STRONG, {"type": "em"}, link)),
        {"type": "orderedList", "attrs": {"order": 3}, "content": _items(_para(_text("z")))},
        {"type": "codeBlock", "content": [_text("print(1)")]},
        {"type": "rule"},
    )
    assert validate_adf(adf) == []


# --- hostile text -----------------------------------------------------------------------------------------


class _Tags(HTMLParser):
    """Start tags with their attributes, and the text, of an HTML fragment."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _assert_only_renderer_tags(html: str, allowed: frozenset[str]) -> _Tags:
    parsed = _Tags(html)
    assert {tag for tag, _ in parsed.tags} <= allowed
    for tag, attrs in parsed.tags:
        if tag == "a":
            assert is_safe_url(attrs["href"] or "")
            assert set(attrs) <= {"href", "rel"}
        else:
            assert attrs == {}
    return parsed


MARKDOWN_TAGS = frozenset({"h1", "h2", "p", "ul", "ol", "li", "blockquote", "strong", "code", "a", "br"})


def _markdown_to_html(text: str) -> str:
    markdown_it = pytest.importorskip("markdown_it")
    # CommonMark with raw HTML on (the dangerous setting) plus the GFM table and strikethrough rules, and
    # without markdown-it's own javascript: filter, so a bad link of ours would show.
    md = markdown_it.MarkdownIt("commonmark").enable(["table", "strikethrough"])
    md.validateLink = lambda url: True
    return md.render(text)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_inert_in_html(payload: str) -> None:
    parsed = _assert_only_renderer_tags(render_html(payload_doc(payload)), TAGS)
    assert not [tag for tag, _ in parsed.tags if tag in ("script", "img", "iframe")]
    assert [attrs["href"] for tag, attrs in parsed.tags if tag == "a"] == [
        "https://acme.zendesk.com/agent/tickets/1"
    ]
    assert " ".join(payload.split()) in " ".join("".join(parsed.text).split())


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_inert_in_markdown(payload: str) -> None:
    html = _markdown_to_html(render_markdown(payload_doc(payload)))
    parsed = _assert_only_renderer_tags(html, MARKDOWN_TAGS)
    assert [attrs["href"] for tag, attrs in parsed.tags if tag == "a"] == [
        "https://acme.zendesk.com/agent/tickets/1"
    ]
    words = " ".join("".join(parsed.text).split())
    assert " ".join(payload.split()) in words


def _wiki_decode(markup: str) -> str:
    """What Jira shows for wiki text made only of characters and escapes (a reference reading of the
    escape rules in jira_wiki's docstring); fails on anything that would be markup."""
    out, i = [], 0
    while i < len(markup):
        rest = markup[i:]
        if rest.startswith("\\\\ "):
            out.append("\n")
            i += 3
        elif rest[0] == "\\":
            following = rest[1:2]
            assert following in ESCAPABLE or following.isalnum(), f"bare backslash at {i}: {markup!r}"
            out.append(following if following in ESCAPABLE else "\\" + following)
            i += 2
        elif entity := re.match(r"&(#[0-9]+|amp);", rest):
            out.append("&" if entity.group(1) == "amp" else chr(int(entity.group(1)[1:])))
            i += entity.end()
        else:
            assert rest[0] not in ESCAPABLE, f"unescaped {rest[0]!r} at {i}: {markup!r}"
            assert rest[0] != "\n", f"raw line break at {i}: {markup!r}"
            out.append(rest[0])
            i += 1
    return "".join(out)


def _wiki_paragraph(text: str) -> str:
    rendered = render_jira_wiki(Document("t", (Section("s", (Paragraph(line(text)),)),)))
    return rendered.split("h2. s\n\n", 1)[1].removesuffix("\n") if plain_text(text) else ""


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_cannot_open_wiki_markup(payload: str) -> None:
    body = _wiki_paragraph(payload)
    # Every special character of the ticket text is escaped, and the text reads back unchanged.
    assert _wiki_decode(body) == payload
    assert not re.match(r"\s*(h[1-6]|bq)\.", body)
    rendered = render_jira_wiki(payload_doc(payload))
    # The only macros are the renderer's own quote block, opened and closed once ({{…}} is inline code).
    assert re.findall(r"(?<![\\{])\{(?!\{)(\w+)", rendered) == ["quote", "quote"]
    assert rendered.count("\n\n{quote}\n") == 1 and rendered.count("\n{quote}\n\n") == 1
    # The only link is the safe one, as [text|url] or, when its text holds link syntax, text [url].
    links = re.findall(r"(?<!\\)\[([^\[\]\n]*)\]", rendered)
    assert [link.rsplit("|", 1)[-1] for link in links] == ["https://acme.zendesk.com/agent/tickets/1"]
    assert re.findall(r"(?<!\\)!", rendered) == []


@pytest.mark.parametrize("payload", PAYLOADS)
def test_payload_is_only_text_in_adf(payload: str) -> None:
    adf = render_adf(payload_doc(payload))
    assert validate_adf(adf) == []

    def strings(node: Any, key: str = "") -> list[tuple[str, str]]:
        if isinstance(node, dict):
            return [pair for k, v in node.items() for pair in strings(v, k)]
        if isinstance(node, list):
            return [pair for v in node for pair in strings(v, key)]
        return [(key, node)] if isinstance(node, str) else []

    first_line = payload.split("\n")[0]
    holders = {key for key, value in strings(adf) if first_line in value}
    assert holders == {"text"}
    hrefs = [value for key, value in strings(adf) if key == "href"]
    assert set(hrefs) == {"https://acme.zendesk.com/agent/tickets/1"}


def test_link_text_with_link_syntax_stays_out_of_the_wiki_link() -> None:
    link = Link("Export | Help [v2]", "https://x.example/a b")
    doc = Document("t", (Section("s", (Paragraph(line(link)),)),))
    assert render_jira_wiki(doc).endswith("Export \\| Help \\[v2\\] [https://x.example/a%20b]\n")


def test_literal_backslashes_survive_in_wiki() -> None:
    assert _wiki_paragraph("C:\\Users\\bob") == "C:\\Users\\bob"
    assert _wiki_paragraph("\\\\server\\share") == "&#92;\\server\\share"
    assert _wiki_paragraph("a\\{code}") == "a&#92;\\{code\\}"
    assert _wiki_paragraph("ends with \\") == "ends with &#92;"


def test_markdown_line_starts_are_text() -> None:
    body = render_markdown(Document("t", (Section("s", (Paragraph(line("1. one\n- two\n===\n    code")),)),)))
    assert body.endswith("1\\. one\\\n\\- two\\\n\\===\\\ncode\n")


# --- any text at all --------------------------------------------------------------------------------------

MARKUP = [*"\\`*_{}[]()#+-.!|<>~&;:=/\"'$%^?@,\n\t ", "{code}", "{quote}", "h1. ", "bq. ", "----", "&lt;"]
texts = st.lists(st.one_of(st.sampled_from(MARKUP), st.characters()), max_size=30).map("".join)
urls = st.one_of(texts, texts.map(lambda t: "https://x.example/" + t), st.just("javascript:alert(1)"))


@st.composite
def documents(draw: st.DrawFn) -> Document:
    def spans() -> tuple[Text | Link, ...]:
        return (
            Text(draw(texts)),
            Text(draw(texts), bold=True),
            Text(draw(texts), code=True),
            Link(draw(texts), draw(urls)),
        )

    blocks = (
        Paragraph(spans()),
        BulletList((spans(), spans())),
        OrderedList((spans(),)),
        Quote(draw(texts)),
    )
    return Document(draw(texts), (Section(draw(texts), blocks),))


@settings(max_examples=300, deadline=None)
@given(documents())
def test_any_text_renders_safely_in_every_format(doc: Document) -> None:
    for fmt in ("markdown", "jira-wiki", "adf", "zendesk-html"):
        assert isinstance(render(doc, fmt), str)
    assert validate_adf(render_adf(doc)) == []
    _assert_only_renderer_tags(render_html(doc), TAGS)
    _assert_only_renderer_tags(_markdown_to_html(render_markdown(doc)), MARKDOWN_TAGS)


@settings(max_examples=300, deadline=None)
@given(texts)
def test_any_text_reads_back_unchanged(text: str) -> None:
    shown = plain_text(text)
    assert _wiki_decode(_wiki_paragraph(text)) == shown
    untitled = Document("", (Section("", (Paragraph(line(text)),)),))
    html = _Tags(render_html(untitled))
    assert "".join(html.text).replace("\n", "") == shown.replace("\n", "")
    # Markdown renderers drop indentation and blank lines; every other character must come through.
    markdown = _Tags(_markdown_to_html(render_markdown(untitled)))
    assert " ".join("".join(markdown.text).split()) == " ".join(shown.split())


# --- Jira's length limit ----------------------------------------------------------------------------------

POINTER = "Package truncated; full package: https://escalate.example/packages/42"


def big_doc(count: int = 400) -> Document:
    return Document(
        "ESCALATION: big",
        (
            Section(
                "PROBLEM NARRATIVE",
                tuple(Paragraph(line(f"Paragraph {i} {{code}} " * 8)) for i in range(count)),
            ),
            Section("CUSTOMER COMMUNICATION STATUS", (Quote("quoted line {quote}\n" * 2000),)),
            Section("ATTACHMENTS AND REFERENCES", (BulletList(tuple(line(f"item {i}") for i in range(50))),)),
        ),
    )


@pytest.mark.parametrize("limit", [32_767, 5_000, 700])
def test_truncated_wiki_fits_and_ends_with_the_pointer(limit: int) -> None:
    text = render_jira_wiki(big_doc())
    assert jira_length(text) > limit
    cut = truncate_wiki(text, limit, POINTER)
    assert jira_length(cut) <= limit
    assert cut.endswith("\n\nPackage truncated; full package: [https://escalate.example/packages/42]")
    assert cut.startswith("h1. ESCALATION: big")
    # Quote blocks stay balanced and no escape or entity is cut in half.
    assert sum(line == "{quote}" for line in cut.split("\n")) % 2 == 0
    assert not re.search(r"(?<!\\)\\\n|&#?\w*\n", cut)


def test_wiki_cut_inside_a_quote_closes_it() -> None:
    text = render_jira_wiki(big_doc(count=0))
    cut = truncate_wiki(text, 20_000, POINTER)
    assert "{quote}\n" in cut and cut.count("{quote}") == 2
    assert "…\n{quote}\n\nPackage truncated" in cut


def test_short_wiki_is_untouched_and_an_impossible_limit_is_an_error() -> None:
    assert truncate_wiki("h1. short", 100, POINTER) == "h1. short"
    with pytest.raises(ValueError):
        truncate_wiki("x" * 100, 20, POINTER)


def test_length_counts_utf16_units_as_jira_does() -> None:
    assert jira_length("😀") == 2
    text = "h1. emoji\n\n" + "😀" * 20_000
    cut = truncate_wiki(text, 32_767, POINTER)
    assert jira_length(cut) <= 32_767 < len(cut) * 2


@pytest.mark.parametrize("limit", [32_767, 5_000, 1_000])
def test_truncated_adf_fits_validates_and_ends_with_the_pointer(limit: int) -> None:
    adf = render_adf(big_doc())
    cut = truncate_adf(adf, limit, POINTER)
    assert jira_length(json.dumps(cut)) <= limit
    assert validate_adf(cut) == []
    assert cut["content"][0] == adf["content"][0]
    assert cut["content"][-1] == {
        "type": "paragraph",
        "content": [
            {"type": "text", "text": "Package truncated; full package: "},
            {
                "type": "text",
                "text": "https://escalate.example/packages/42",
                "marks": [{"type": "link", "attrs": {"href": "https://escalate.example/packages/42"}}],
            },
        ],
    }


def test_short_adf_is_untouched() -> None:
    adf = render_adf(DOC)
    assert truncate_adf(adf, 32_767, POINTER) is adf
