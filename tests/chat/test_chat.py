"""The end-user chat: access, streaming with the real transformers backend, limits, comparisons."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from django.urls import reverse
from django.utils import timezone

from feedback_app.models import Assignment, ChatMessage, ComparisonItem, Conversation, Judgement
from feedback_app.services import chat, generation
from feedback_app.services.assignment import lease_next_item, reclaim_expired_leases
from feedback_app.services.exports import ExportOptions, create_export, iter_export_lines
from feedback_app.services.judgements import submit_judgement
from tests.factories import UserFactory
from trainer.generation.vllm_server import free_port

pytestmark = pytest.mark.django_db(transaction=True)  # promotions commit; the alias follows on commit

HOSTILE = (
    "<script>alert(1)</script>\n\n<img src=x onerror=alert(1)>\n\n[click](javascript:alert(1))\n\n"
    '<a href="javascript:alert(3)">raw</a> <svg onload=alert(4)></svg>'
)


def events(response) -> list[tuple[str, dict]]:
    assert response["Content-Type"].startswith("text/event-stream")
    body = b"".join(response.streaming_content).decode()
    out = []
    for block in body.split("\n\n"):
        name = re.search(r"^event: (.+)$", block, re.M)
        data = re.search(r"^data: (.+)$", block, re.M)
        if name and data:
            out.append((name.group(1), json.loads(data.group(1))))
    return out


def send(client, text: str, conversation: Conversation | None = None, key: str | None = None, **headers):
    url = reverse("chat-send", args=[conversation.pk]) if conversation else reverse("chat-new")
    return client.post(url, {"text": text, "client_key": key or uuid.uuid4().hex}, **headers)


def stream(client, message: ChatMessage):
    return client.post(reverse("chat-stream", args=[message.conversation_id, message.pk]))


def pending(user) -> ChatMessage:
    return ChatMessage.objects.filter(conversation__user=user, role="assistant").latest("created_at")


def streamed_text(evs: list[tuple[str, dict]], slot: int = 0) -> str:
    return "".join(d["text"] for name, d in evs if name == "delta" and d["slot"] == slot)


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))


def assert_inert(html: str) -> None:
    parser = _Tags()
    parser.feed(html)
    for tag, attrs in parser.tags:
        assert tag not in {"script", "img", "svg", "iframe"}, tag
        for name, value in attrs.items():
            assert not name.startswith("on"), f"<{tag} {name}> survived"
            if name in {"href", "src"}:
                assert not value.strip().lower().startswith("javascript:"), value


def thread_html(page_html: str) -> str:
    start = page_html.index('id="chat-thread"')
    return page_html[start : page_html.index('id="chat-composer"')]


# -- access -------------------------------------------------------------------------------------
def test_login_required(client):
    for response in (client.get(reverse("chat")), send(client, "hi")):
        assert response.status_code == 302 and reverse("login") in response["Location"]
    assert not ChatMessage.objects.exists()


def test_only_your_own_conversations(client, serving_base):
    alice, bob = UserFactory(), UserFactory()
    client.force_login(alice)
    assert send(client, "Alice's secret question").status_code == 302
    conversation = Conversation.objects.get(user=alice)
    answer = pending(alice)
    client.force_login(bob)
    listing = client.get(reverse("chat"))
    assert listing.status_code == 200 and b"secret question" not in listing.content
    assert client.get(reverse("chat-conversation", args=[conversation.pk])).status_code == 404
    assert stream(client, answer).status_code == 404
    assert send(client, "me too", conversation).status_code == 404
    choose = reverse("chat-choose", args=[conversation.pk, answer.pk])
    assert client.post(choose, {"choice": "1", "client_key": "k"}).status_code == 404
    assert client.post(reverse("chat-delete", args=[conversation.pk])).status_code == 404
    answer.refresh_from_db()
    assert answer.status == "pending" and Conversation.objects.filter(pk=conversation.pk).exists()
    client.force_login(alice)
    page = client.get(reverse("chat-conversation", args=[conversation.pk]))
    assert page.status_code == 200 and b"secret question" in page.content


# -- streaming ------------------------------------------------------------------------------------
def test_multi_turn_stream_stores_text_and_version(client, two_versions):
    _, v1 = two_versions
    user = UserFactory()
    client.force_login(user)
    key = uuid.uuid4().hex
    assert send(client, "What is a list?", key=key).status_code == 302
    assert send(client, "What is a list?", key=key).status_code == 302  # a retry: stored once
    assert ChatMessage.objects.filter(role="user").count() == 1
    answer = pending(user)
    assert answer.status == "pending" and answer.content == ""
    evs = events(stream(client, answer))
    assert evs[0][0] == "start" and evs[-1][0] == "done"
    answer.refresh_from_db()
    assert answer.status == "complete" and answer.content == streamed_text(evs) != ""
    assert answer.model_version == v1
    assert answer.generation_params["model"] == v1.lora_name
    assert answer.generation_params["backend"] == "hf"
    assert 'data-status="complete"' in evs[-1][1]["html"]

    # A second turn sees the first one; a reload of a finished answer never generates again.
    again = events(stream(client, answer))
    assert [name for name, _ in again] == ["done"]
    conversation = answer.conversation
    assert send(client, "And a tuple?", conversation).status_code == 302
    second = pending(user)
    events(stream(client, second))
    second.refresh_from_db()
    assert second.status == "complete" and second.generation_params["context_messages"] == 3
    assert [m.position for m in chat.thread(conversation)] == [0, 1, 2, 3]
    page = client.get(reverse("chat-conversation", args=[conversation.pk]))
    assert page.content.count(b'class="chat-msg') == 4


def test_htmx_send_returns_the_turn_and_a_fresh_composer(client, serving_base):
    user = UserFactory()
    client.force_login(user)
    first = send(client, "Hello there", HTTP_HX_REQUEST="true")
    assert first.status_code == 200 and first["HX-Push-Url"].startswith("/chat/")
    assert b'id="chat-main"' in first.content and b'hx-swap-oob="true"' in first.content
    conversation = Conversation.objects.get(user=user)
    assert conversation.title == "Hello there"
    answer = pending(user)
    events(stream(client, answer))
    turn = send(client, "Thanks", conversation, HTTP_HX_REQUEST="true")
    assert turn.status_code == 200
    html = turn.content.decode()
    assert html.count('class="chat-msg') == 2 and 'data-status="pending"' in html
    assert 'id="chat-composer"' in html and 'hx-swap-oob="true"' in html


def test_model_output_is_rendered_inert(client, serving_base):
    user = UserFactory()
    client.force_login(user)
    send(client, HOSTILE)
    answer = pending(user)
    # As if the model had written it: the page and the stream's final HTML sanitize it.
    ChatMessage.objects.filter(pk=answer.pk).update(content=HOSTILE, status="complete")
    page = client.get(reverse("chat-conversation", args=[answer.conversation_id]))
    html = thread_html(page.content.decode())
    assert "alert(1)" in html  # shown as text
    assert_inert(html)
    (done,) = events(stream(client, answer))
    assert done[0] == "done"
    assert_inert(done[1]["html"])


# -- limits -------------------------------------------------------------------------------------
def test_size_limits_answer_with_a_clear_4xx(client, serving_base, settings):
    user = UserFactory()
    client.force_login(user)
    settings.CHAT = {**settings.CHAT, "MAX_MESSAGE_CHARS": 50, "MAX_MESSAGES": 4}
    too_long = send(client, "x" * 51)
    assert too_long.status_code == 400 and b"limit is 50" in too_long.content
    htmx = send(client, "x" * 51, HTTP_HX_REQUEST="true")
    assert htmx.status_code == 400 and htmx["HX-Retarget"] == "#chat-flash"
    assert send(client, "   ").status_code == 400
    assert not ChatMessage.objects.exists()

    settings.GENERATION = {**settings.GENERATION, "MAX_OUTPUT_CHARS": 5}
    send(client, "Say something long")
    answer = pending(user)
    events(stream(client, answer))
    answer.refresh_from_db()
    assert answer.status == "complete" and 0 < len(answer.content) <= 5

    early = send(client, "Next?", answer.conversation)
    events(stream(client, pending(user)))
    assert early.status_code == 302
    full = send(client, "One more", answer.conversation)
    assert full.status_code == 400 and b"limit of 4 messages" in full.content


def test_one_answer_at_a_time(client, serving_base, settings):
    user = UserFactory()
    client.force_login(user)
    send(client, "First")
    answer = pending(user)
    blocked = send(client, "Second", answer.conversation)
    assert blocked.status_code == 409 and b"still being written" in blocked.content

    # At most CHAT_MAX_STREAMS_PER_USER answers are written at once, across conversations.
    settings.CHAT = {**settings.CHAT, "MAX_STREAMS_PER_USER": 1}
    send(client, "Elsewhere")
    other = pending(user)
    ChatMessage.objects.filter(pk=answer.pk).update(status="streaming", started_at=timezone.now())
    busy = stream(client, other)
    assert busy.status_code == 429 and b"being written" in busy.content
    assert stream(client, answer).status_code == 409  # the same answer in a second window
    other.refresh_from_db()
    assert other.status == "pending"


# -- "which is better?" ---------------------------------------------------------------------------
def _compare(client, settings, user) -> ChatMessage:
    settings.CHAT = {**settings.CHAT, "COMPARE_RATE": 1.0}
    client.force_login(user)
    assert send(client, "Which is better, tea or coffee?").status_code == 302
    answer = pending(user)
    assert answer.compare
    evs = events(stream(client, answer))
    assert evs[0] == ("start", {"slots": 2}) and evs[-1][0] == "done"
    answer.refresh_from_db()
    assert answer.status == "choosing" and answer.item is not None
    shown = Assignment.objects.get(item=answer.item, labeler=user).shown_order
    texts = [answer.item.responses.get(pk=rid).text for rid in shown]
    assert texts == [streamed_text(evs, 0), streamed_text(evs, 1)]
    return answer


def test_comparison_choice_is_one_judgement_and_is_exported(client, settings, two_versions):
    base, v1 = two_versions
    user = UserFactory()
    answer = _compare(client, settings, user)
    item = answer.item
    assert item.project.name == "Chat feedback" and item.judgements_wanted == 1 and item.active_leases == 1
    responses = list(item.responses.all())
    assert {r.model_version for r in responses} == {base, v1}  # serving against previous
    assert {r.generation_params["model"] for r in responses} == {"base", v1.lora_name}
    assert all(r.generation_params["source"] == "chat" for r in responses)
    assert item.prompt.messages == [{"role": "user", "content": "Which is better, tea or coffee?"}]

    page = client.get(reverse("chat-conversation", args=[answer.conversation_id])).content.decode()
    assert "Which is better?" in page and 'data-choice-key="2"' in page
    assert v1.lora_name not in page and "v1" not in thread_html(page)  # the origin stays hidden
    blocked = send(client, "Meanwhile…", answer.conversation)
    assert blocked.status_code == 409 and b"Pick the better answer" in blocked.content

    shown = Assignment.objects.get(item=item, labeler=user).shown_order
    url = reverse("chat-choose", args=[answer.conversation_id, answer.pk])
    key = uuid.uuid4().hex
    form = {"choice": "2", "client_key": key, "time_spent_ms": "1500"}
    first = client.post(url, form, HTTP_HX_REQUEST="true")
    retry = client.post(url, form, HTTP_HX_REQUEST="true")
    assert first.status_code == retry.status_code == 200
    assert b'id="chat-composer"' in first.content
    judgement = Judgement.objects.get()
    assert judgement.labeler == user and judgement.item == item
    assert judgement.ranking == [[shown[1]], [shown[0]]] and judgement.time_spent_ms == 1500
    other = client.post(url, {"choice": "1", "client_key": uuid.uuid4().hex})
    assert other.status_code == 409 and Judgement.objects.count() == 1
    item.refresh_from_db()
    assert item.judgement_count == 1 and item.active_leases == 0 and item.status == "complete"

    answer.refresh_from_db()
    winner = item.responses.get(pk=shown[1])
    assert answer.status == "complete" and answer.content == winner.text
    assert answer.model_version == winner.model_version and answer.judgement == judgement

    snapshot = create_export(project=item.project, options=ExportOptions())
    rows = [json.loads(line) for line in iter_export_lines(snapshot)]
    loser = item.responses.get(pk=shown[0])
    if winner.text != loser.text:
        assert [(r["chosen"], r["rejected"]) for r in rows] == [(winner.text, loser.text)]
    assert rows and rows[0]["judgement_ids"] == [judgement.pk]

    # The chosen answer continues the conversation.
    settings.CHAT = {**settings.CHAT, "COMPARE_RATE": 0.0}
    send(client, "Why?", answer.conversation)
    events(stream(client, pending(user)))
    follow_up = pending(user)
    assert follow_up.status == "complete"
    assert chat.context(follow_up)[1] == {"role": "assistant", "content": winner.text}


def test_both_bad_and_tie_with_one_version(client, settings, serving_base):
    user = UserFactory()
    answer = _compare(client, settings, user)
    responses = list(answer.item.responses.all())
    assert {r.model_version for r in responses} == {serving_base}  # no previous: two samples
    seeds = {r.generation_params["seed"] for r in responses}
    assert len(seeds) == 2
    url = reverse("chat-choose", args=[answer.conversation_id, answer.pk])
    assert client.post(url, {"choice": "bad", "client_key": "k-1"}).status_code == 302
    judgement = Judgement.objects.get()
    assert judgement.all_bad and len(judgement.ranking) == 1
    answer.refresh_from_db()
    shown = Assignment.objects.get(item=answer.item, labeler=user).shown_order
    assert answer.response_id == shown[0] and answer.status == "complete"

    second = _compare(client, settings, user)
    url = reverse("chat-choose", args=[second.conversation_id, second.pk])
    bad_choice = client.post(url, {"choice": "3", "client_key": "k-2"})
    assert bad_choice.status_code == 400
    tie = client.post(url, {"choice": "tie", "client_key": "k-2"})
    assert tie.status_code == 302
    tie_judgement = Judgement.objects.get(all_bad=False)
    assert len(tie_judgement.ranking) == 1 and sorted(tie_judgement.ranking[0]) == sorted(
        second.item.response_ids()
    )
    assert Judgement.objects.count() == 2
    assert ComparisonItem.objects.filter(project__name="Chat feedback").count() == 2


# -- generation down -------------------------------------------------------------------------------
def test_vllm_down_says_so_and_keeps_the_conversation(client, chat_settings, hf_generator):
    chat_settings.GENERATION = {
        **chat_settings.GENERATION,
        "BACKEND": "vllm",
        "VLLM_URLS": [f"http://127.0.0.1:{free_port()}"],
    }
    generation.set_backend(None)
    user = UserFactory()
    client.force_login(user)
    assert send(client, "Are you there?").status_code == 302
    answer = pending(user)
    evs = events(stream(client, answer))
    assert [name for name, _ in evs] == ["start", "error"]
    assert "unavailable" in evs[-1][1]["detail"] and evs[-1][1]["code"] == 503
    assert "Retry" in evs[-1][1]["html"]
    answer.refresh_from_db()
    assert answer.status == "failed" and "unavailable" in answer.error
    page = client.get(reverse("chat-conversation", args=[answer.conversation_id]))
    assert page.status_code == 200 and b"Are you there?" in page.content and b"unavailable" in page.content
    blocked = send(client, "Hello?", answer.conversation)
    assert blocked.status_code == 409 and b"retry it first" in blocked.content

    # Back up: the retry answers the same question; nothing was lost.
    chat_settings.GENERATION = {**chat_settings.GENERATION, "BACKEND": "hf"}
    generation.set_backend(hf_generator)
    try:
        evs = events(stream(client, answer))
    finally:
        generation.set_backend(None)
    answer.refresh_from_db()
    assert evs[-1][0] == "done" and answer.status == "complete" and answer.content
    assert chat.context(answer) == [{"role": "user", "content": "Are you there?"}]


def test_a_chat_comparison_is_never_served_to_someone_else(client, settings, serving_base):
    user, labeler = UserFactory(), UserFactory()
    answer = _compare(client, settings, user)
    project = answer.item.project
    reclaim_expired_leases(now=timezone.now() + timedelta(days=30))
    assert lease_next_item(project=project, labeler=labeler) is None
    # The user's own labeler page of the project resumes the same item; a pick there stands in the chat.
    lease = lease_next_item(project=project, labeler=user)
    assert lease is not None and lease.item.pk == answer.item_id
    first, second = lease.assignment.shown_order
    ranking = [[second], [first]]
    submit_judgement(labeler=user, item_id=answer.item_id, ranking=ranking, client_key="label-page")
    url = reverse("chat-choose", args=[answer.conversation_id, answer.pk])
    assert client.post(url, {"choice": "1", "client_key": "chat-page"}).status_code == 302
    answer.refresh_from_db()
    assert answer.status == "complete" and answer.response_id == second
    assert Judgement.objects.count() == 1 and answer.judgement.client_key == "label-page"
