"""The labeler UI: pages, htmx fragments and what they record."""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.urls import reverse

from feedback_app.models import Assignment, Demonstration, Judgement, ModelVersion, Project
from tests.factories import ModelVersionFactory, ProjectFactory, make_item

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def client_for(client):
    def login(user):
        client.force_login(user)
        return client

    return login


def _label_url(project: Project) -> str:
    return reverse("label", args=[project.pk])


def _submit_url(project: Project) -> str:
    return reverse("label-submit", args=[project.pk])


def _skip_url(project: Project) -> str:
    return reverse("label-skip", args=[project.pk])


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert match, f"no hidden input {name!r} in the page"
    return match.group(1)


def _lease(labeler, project) -> Assignment:
    return Assignment.objects.get(labeler=labeler, item__project=project, status=Assignment.Status.LEASED)


def _post_judgement(client, project, *, item_id, ranking, client_key=None, htmx=True, **extra):
    data = {
        "item_id": item_id,
        "client_key": client_key or uuid.uuid4().hex,
        "ranking": ranking if isinstance(ranking, str) else json.dumps(ranking),
        "time_spent_ms": 1234,
        **extra,
    }
    return client.post(_submit_url(project), data, **(HTMX if htmx else {}))


def test_anonymous_is_redirected_to_login(client, project):
    for url in (reverse("home"), _label_url(project)):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))
    response = client.post(_submit_url(project), {})
    assert response.status_code == 302
    assert Judgement.objects.count() == 0


def test_login_page_renders(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b'name="username"' in response.content
    assert b'name="password"' in response.content


def test_home_lists_active_projects_with_progress(client_for, labeler, staff):
    project = ProjectFactory(name="Helpfulness")
    ProjectFactory(name="Archived", is_active=False)
    for _ in range(3):
        make_item(project)
    make_item(project, is_gold=True)  # gold items are not counted as work left
    # One item already judged today by this labeler.
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    _post_judgement(client, project, item_id=assignment.item_id, ranking=[[1], [2]])

    html = client.get(reverse("home")).content.decode()
    assert "Helpfulness" in html
    assert "Archived" not in html
    assert "Start labeling" in html
    # Done 1; the item shown after submitting is leased to the labeler, so 1 is left.
    assert re.search(r"<strong>1</strong> done today · <strong>1</strong> left", html)
    assert "/admin/" not in html

    client.force_login(staff)
    assert "/admin/" in client.get(reverse("home")).content.decode()


def test_label_page_shows_responses_in_shown_order_without_model_names(client_for, labeler, project):
    ModelVersionFactory(name="secret-model-v7")
    item = make_item(project, n_responses=3, texts=["Alpha text", "Bravo text", "Charlie text"])
    for response in item.responses.all():
        response.model_version = ModelVersion.objects.get(name="secret-model-v7")
        response.save()
    client = client_for(labeler)
    response = client.get(_label_url(project))
    assert response.status_code == 200
    html = response.content.decode()
    assignment = _lease(labeler, project)
    texts = dict(item.responses.values_list("pk", "text"))
    positions = [html.index(texts[rid]) for rid in assignment.shown_order]
    assert positions == sorted(positions), "responses must appear in the recorded shown order"
    assert "secret-model-v7" not in html
    assert "v0" not in re.sub(r"<[^>]+>", " ", html).split()
    # Response ids never reach the page: the form speaks in display positions.
    for rid in assignment.shown_order:
        assert f'data-response-id="{rid}"' not in html
    assert project.guidelines.split("**")[0] in html  # guidelines panel
    assert "<strong>helpful</strong>" in html  # rendered as Markdown
    assert _hidden(html, "item_id") == str(item.pk)
    uuid.UUID(_hidden(html, "client_key"))
    assert 'hx-headers=\'{"X-CSRFToken": "' in html


def test_reload_shows_the_same_item(client_for, labeler, project):
    make_item(project)
    make_item(project)
    client = client_for(labeler)
    first = _hidden(client.get(_label_url(project)).content.decode(), "item_id")
    second = _hidden(client.get(_label_url(project)).content.decode(), "item_id")
    assert first == second
    assert Assignment.objects.filter(labeler=labeler).count() == 1


@pytest.mark.parametrize(
    ("positions", "all_bad", "expected"),
    [
        ([[1], [2]], False, lambda a, b: [[a], [b]]),
        ([[2], [1]], False, lambda a, b: [[b], [a]]),
        ([[1, 2]], False, lambda a, b: [[a, b]]),
        ([[1, 2]], True, lambda a, b: [[a, b]]),
    ],
)
def test_submit_records_ranking_in_response_ids_and_returns_next_item(
    client_for, labeler, project, positions, all_bad, expected
):
    make_item(project)
    make_item(project, texts=["Second item left", "Second item right"])
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    left, right = assignment.shown_order

    response = _post_judgement(
        client,
        project,
        item_id=assignment.item_id,
        ranking=positions,
        all_bad="true" if all_bad else "",
        rationale="  Clearer.  ",
    )
    assert response.status_code == 200
    judgement = Judgement.objects.get(labeler=labeler)
    assert judgement.ranking == expected(left, right)
    assert judgement.all_bad is all_bad
    assert judgement.shown_order == assignment.shown_order
    assert judgement.time_spent_ms == 1234
    assert judgement.rationale == "Clearer."
    # The fragment is the next item's workspace, not a full page.
    html = response.content.decode()
    assert html.lstrip().startswith('<section id="workspace"')
    assert "<html" not in html
    assert "Second item left" in html
    next_assignment = _lease(labeler, project)
    assert next_assignment.item_id != assignment.item_id
    assert _hidden(html, "item_id") == str(next_assignment.item_id)
    assert 'hx-swap-oob="true"' in html  # clears old error messages


def test_ranking_of_three_with_ties(client_for, labeler, project):
    make_item(project, n_responses=3)
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    a, b, c = assignment.shown_order
    response = _post_judgement(client, project, item_id=assignment.item_id, ranking=[[2, 3], [1]])
    assert response.status_code == 200
    assert Judgement.objects.get().ranking == [[b, c], [a]]


def test_demonstration_is_stored(client_for, labeler, project):
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    _post_judgement(
        client, project, item_id=assignment.item_id, ranking=[[1], [2]], demonstration="A better answer."
    )
    demo = Demonstration.objects.get()
    assert demo.text == "A better answer."
    assert demo.judgement == Judgement.objects.get()


def test_plain_post_redirects_back_to_label_page(client_for, labeler, project):
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    response = _post_judgement(client, project, item_id=assignment.item_id, ranking=[[1], [2]], htmx=False)
    assert response.status_code == 302
    assert response["Location"] == _label_url(project)
    assert Judgement.objects.count() == 1


def test_double_submit_with_same_client_key_records_once(client_for, labeler, project):
    make_item(project)
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    key = uuid.uuid4().hex
    first = _post_judgement(client, project, item_id=assignment.item_id, ranking=[[1], [2]], client_key=key)
    second = _post_judgement(client, project, item_id=assignment.item_id, ranking=[[2], [1]], client_key=key)
    assert first.status_code == 200
    assert second.status_code == 200
    judgement = Judgement.objects.get(labeler=labeler)
    assert judgement.ranking == [[assignment.shown_order[0]], [assignment.shown_order[1]]]


def test_queue_empty_message(client_for, labeler, project):
    client = client_for(labeler)
    html = client.get(_label_url(project)).content.decode()
    assert "all caught up" in html
    assert 'id="label-form"' not in html


def test_queue_empty_after_last_item(client_for, labeler, project):
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    html = _post_judgement(client, project, item_id=assignment.item_id, ranking=[[1], [2]]).content.decode()
    assert "all caught up" in html


@pytest.mark.parametrize(
    ("ranking", "message"),
    [
        ("not json", "not valid JSON"),
        ("[]", "non-empty list"),
        ('[["a"], [2]]', "not a response number"),
        ("[[1]]", "missing"),
        ("[[1], [1, 2]]", "more than once"),
        ("[[1], [2], [3]]", "responses 1 to 2"),
        ('{"x": 1}', "non-empty list"),
    ],
)
def test_bad_ranking_is_400_with_message(client_for, labeler, project, ranking, message):
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    response = _post_judgement(client, project, item_id=assignment.item_id, ranking=ranking)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert response["HX-Retarget"] == "#flash"
    assert Judgement.objects.count() == 0


def test_missing_fields_are_400(client_for, labeler, project):
    client = client_for(labeler)
    response = client.post(_submit_url(project), {"ranking": "[[1],[2]]"}, **HTMX)
    assert response.status_code == 400
    assert "item id" in response.content.decode()


def test_item_not_leased_to_you_is_409(client_for, labeler, other_labeler, project):
    make_item(project)
    make_item(project)
    other = client_for(other_labeler)
    other.get(_label_url(project))
    theirs = _lease(other_labeler, project)
    client = client_for(labeler)
    response = _post_judgement(client, project, item_id=theirs.item_id, ranking=[[1], [2]])
    assert response.status_code == 409
    assert "not leased to you" in response.content.decode()
    assert "Load my next item" in response.content.decode()
    assert Judgement.objects.count() == 0


def test_item_of_another_project_is_409(client_for, labeler, project):
    other_project = ProjectFactory()
    make_item(other_project)
    client = client_for(labeler)
    client.get(_label_url(other_project))
    assignment = _lease(labeler, other_project)
    response = _post_judgement(client, project, item_id=assignment.item_id, ranking=[[1], [2]])
    assert response.status_code == 409


def test_submitting_twice_on_one_item_is_409(client_for, labeler, project):
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    _post_judgement(client, project, item_id=assignment.item_id, ranking=[[1], [2]])
    response = _post_judgement(client, project, item_id=assignment.item_id, ranking=[[1], [2]])
    assert response.status_code == 409
    assert Judgement.objects.count() == 1


def test_rate_limited_is_429_with_message(client_for, labeler, project, settings):
    settings.FEEDBACK = {**settings.FEEDBACK, "VOTE_RATE": 1, "VOTE_RATE_WINDOW": 60}
    make_item(project)
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    first = _lease(labeler, project)
    assert _post_judgement(client, project, item_id=first.item_id, ranking=[[1], [2]]).status_code == 200
    second = _lease(labeler, project)
    response = _post_judgement(client, project, item_id=second.item_id, ranking=[[1], [2]])
    assert response.status_code == 429
    assert "Too many submissions" in response.content.decode()
    assert int(response["Retry-After"]) >= 1


def test_non_htmx_error_renders_the_full_page(client_for, labeler, project):
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    assignment = _lease(labeler, project)
    response = _post_judgement(client, project, item_id=assignment.item_id, ranking="nope", htmx=False)
    assert response.status_code == 400
    html = response.content.decode()
    assert "<html" in html
    assert "not valid JSON" in html
    assert 'id="label-form"' in html


def test_skip_gives_the_next_item(client_for, labeler, project):
    make_item(project)
    make_item(project)
    client = client_for(labeler)
    client.get(_label_url(project))
    first = _lease(labeler, project)
    response = client.post(_skip_url(project), {"item_id": first.item_id}, **HTMX)
    assert response.status_code == 200
    first.refresh_from_db()
    assert first.status == Assignment.Status.SKIPPED
    second = _lease(labeler, project)
    assert second.item_id != first.item_id
    assert _hidden(response.content.decode(), "item_id") == str(second.item_id)
    # Skipping again is a clear conflict, not a 500.
    again = client.post(_skip_url(project), {"item_id": first.item_id}, **HTMX)
    assert again.status_code == 409
    assert client.post(_skip_url(project), {"item_id": "x"}, **HTMX).status_code == 400


def test_labelers_only_see_their_own_queue(client_for, labeler, other_labeler, project):
    make_item(project, texts=["Only item left", "Only item right"], k=1)
    client_a = client_for(labeler)
    client_a.get(_label_url(project))
    mine = _lease(labeler, project)
    _post_judgement(
        client_a, project, item_id=mine.item_id, ranking=[[1], [2]], rationale="A's secret reason"
    )

    client_b = client_for(other_labeler)
    html = client_b.get(_label_url(project)).content.decode()
    assert "Only item left" not in html  # k=1: the item is complete, not in B's queue
    assert "A's secret reason" not in html
    assert "all caught up" in html
    html = client_b.get(reverse("home")).content.decode()
    assert re.search(r"<strong>0</strong> done today · <strong>0</strong> left", html)
    # B cannot skip or judge A's item.
    assert client_b.post(_skip_url(project), {"item_id": mine.item_id}, **HTMX).status_code == 409
    response = _post_judgement(client_b, project, item_id=mine.item_id, ranking=[[1], [2]])
    assert response.status_code == 409


def test_other_labelers_judgements_never_appear(client_for, labeler, other_labeler, project):
    make_item(project, k=3)
    client_a = client_for(labeler)
    client_a.get(_label_url(project))
    mine = _lease(labeler, project)
    _post_judgement(client_a, project, item_id=mine.item_id, ranking=[[1], [2]], rationale="zebra-rationale")
    client_b = client_for(other_labeler)
    html = client_b.get(_label_url(project)).content.decode()
    assert _hidden(html, "item_id") == str(mine.item_id)  # same item, own lease
    assert "zebra-rationale" not in html
    assert "Rationale" in html


def test_multi_turn_prompt_renders_as_conversation(client_for, labeler, project):
    item = make_item(project)
    item.prompt.messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What is `2+2`?"},
        {"role": "assistant", "content": "4."},
        {"role": "user", "content": "And times **3**?"},
    ]
    item.prompt.save()
    client = client_for(labeler)
    html = client.get(_label_url(project)).content.decode()
    assert "Conversation" in html
    roles = re.findall(r'<div class="role">(\w+)</div>', html)
    assert roles == ["System", "User", "Assistant", "User"]
    assert "<code>2+2</code>" in html
    assert "<strong>3</strong>" in html
    assert html.index("You are terse.") < html.index("And times")


def test_inactive_project_is_404(client_for, labeler):
    project = ProjectFactory(is_active=False)
    assert client_for(labeler).get(_label_url(project)).status_code == 404


def test_htmx_get_returns_fragment(client_for, labeler, project):
    make_item(project)
    html = client_for(labeler).get(_label_url(project), **HTMX).content.decode()
    assert html.lstrip().startswith('<section id="workspace"')
