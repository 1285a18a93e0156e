"""Untrusted model output, prompts and guidelines render inert on the label page."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from django.urls import reverse

from feedback_app.services.rendering import render_markdown
from feedback_app.templatetags.feedback_tags import markdown_filter
from tests.factories import ProjectFactory, make_item

pytestmark = pytest.mark.django_db

HOSTILE = (
    "<script>alert(1)</script>\n\n"
    "<img src=x onerror=alert(1)>\n\n"
    "[click](javascript:alert(1))\n\n"
    '[also](JaVaScRiPt:alert(2)) <a href="javascript:alert(3)">raw link</a>\n\n'
    '<svg onload=alert(4)></svg> <iframe src="https://evil.example"></iframe>\n\n'
    '![img](javascript:alert(5)) <div style="background:url(javascript:alert(6))">x</div>'
)


class _TagCollector(HTMLParser):
    """Collects the real elements and attributes of a document (text, escaped or not, is ignored)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {name: value or "" for name, value in attrs}))


def _elements(html: str) -> list[tuple[str, dict[str, str]]]:
    parser = _TagCollector()
    parser.feed(html)
    parser.close()
    return parser.tags


def _assert_inert(html: str) -> None:
    for tag, attrs in _elements(html):
        assert tag not in {"script", "img", "svg", "iframe", "object", "embed", "style"}, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}=...> survived"
            if name in {"href", "src", "action", "formaction", "xlink:href"}:
                assert (
                    not re.sub(r"\s", "", value).lower().startswith(("javascript:", "data:", "vbscript:"))
                ), f"<{tag} {name}={value!r}> survived"


def _workspace(html: str) -> str:
    start = html.index('<section id="workspace"')
    return html[start : html.index("</section>", start)]


def test_markdown_filter_is_sanitized():
    html = str(markdown_filter(HOSTILE))
    _assert_inert(html)
    # Raw HTML is shown as text, so the labeler sees what the model wrote.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert str(markdown_filter(None)) == ""


def test_code_blocks_survive_sanitizing():
    html = render_markdown("```python\nprint('<b>hi</b>')\n```")
    assert '<code class="language-python">' in html
    assert "&lt;b&gt;hi&lt;/b&gt;" in html


def test_hostile_response_prompt_and_guidelines_render_inert(client, labeler):
    project = ProjectFactory(guidelines=HOSTILE)
    item = make_item(project, texts=[HOSTILE, "A fine answer."])
    item.prompt.messages = [
        {"role": "user", "content": HOSTILE},
        {"role": "assistant", "content": "ok"},
        {"role": "<script>alert(7)</script>", "content": "odd role"},
    ]
    item.prompt.save()
    client.force_login(labeler)
    response = client.get(reverse("label", args=[project.pk]))
    assert response.status_code == 200
    html = response.content.decode()
    # The page itself loads its own scripts; nothing from the item may add any.
    _assert_inert(_workspace(html))
    guidelines = html[html.index('id="guidelines"') : html.index('id="flash"')]
    _assert_inert(guidelines)
    assert "alert(1)" in html  # shown as text
    scripts = [attrs for tag, attrs in _elements(html) if tag == "script"]
    assert scripts and all(attrs.get("src", "").startswith("/static/") for attrs in scripts)


def test_hostile_response_in_htmx_fragment_is_inert(client, labeler):
    project = ProjectFactory()
    make_item(project, texts=["First.", "Second."])
    make_item(project, texts=["Fine.", HOSTILE])
    client.force_login(labeler)
    client.get(reverse("label", args=[project.pk]))
    from feedback_app.models import Assignment

    assignment = Assignment.objects.get(labeler=labeler)
    response = client.post(
        reverse("label-submit", args=[project.pk]),
        {"item_id": assignment.item_id, "client_key": "k1", "ranking": "[[1],[2]]", "time_spent_ms": 5},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "alert(1)" in html
    _assert_inert(html)
    assert not [tag for tag, _ in _elements(html) if tag == "script"]
