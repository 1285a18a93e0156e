"""The chat in a real headless Chromium: Enter sends, Shift+Enter is a new line, the answer streams
in, and a comparison is decided with the keyboard."""

from __future__ import annotations

import pytest

from feedback_app.models import Assignment, ChatMessage, Judgement
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_chat_with_the_keyboard(live_server, page, log_in, settings, two_versions):
    user = UserFactory(username="chat-browser")
    page.goto(f"{live_server.url}/chat/")
    assert "/accounts/login/" in page.url
    log_in(user.username)
    page.wait_for_selector("#chat-input")
    assert page.url.endswith("/chat/")

    # Shift+Enter is a new line; Enter sends.
    page.click("#chat-input")
    page.keyboard.type("Hello")
    page.keyboard.press("Shift+Enter")
    page.keyboard.type("world")
    assert page.input_value("#chat-input") == "Hello\nworld"
    assert not ChatMessage.objects.exists()
    page.keyboard.press("Enter")
    page.wait_for_selector('#chat-thread .chat-msg.role-assistant[data-status="complete"]', timeout=60_000)
    answer = ChatMessage.objects.get(role="assistant")
    assert answer.status == "complete" and answer.content and answer.model_version == two_versions[1]
    assert f"/chat/{answer.conversation_id}/" in page.url  # the address follows the new conversation
    assert page.locator("#chat-sidebar a[aria-current=page]").inner_text() == "Hello world"
    assert page.locator("#chat-thread .role-user .chat-text").inner_text() == "Hello\nworld"
    assert page.input_value("#chat-input") == ""

    # A comparison: two answers side by side, the composer waits, `2` picks the right one.
    settings.CHAT = {**settings.CHAT, "COMPARE_RATE": 1.0}
    page.click("#chat-input")
    page.keyboard.type("Tea or coffee?")
    page.keyboard.press("Enter")
    page.wait_for_selector('#chat-thread .chat-msg[data-status="choosing"]', timeout=60_000)
    assert page.locator('.chat-msg[data-status="choosing"] .chat-candidate').count() == 2
    assert page.locator("#chat-input").is_disabled()
    assert "Pick the better answer" in page.locator("[data-hint]").inner_text()
    compared = ChatMessage.objects.get(status="choosing")
    first, second = Assignment.objects.get(item=compared.item, labeler=user).shown_order
    page.keyboard.press("2")
    page.wait_for_selector(f'#msg-{compared.pk}[data-status="complete"]')
    judgement = Judgement.objects.get()
    assert judgement.ranking == [[second], [first]] and judgement.time_spent_ms > 0
    compared.refresh_from_db()
    assert compared.response_id == second
    assert not page.locator("#chat-input").is_disabled()
    page.screenshot(path="/tmp/chat.png", full_page=True)
