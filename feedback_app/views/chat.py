"""The end-user chat pages (``/chat/``): Django templates, htmx, and one streamed endpoint.

Thin views over ``feedback_app.services.chat``: ``send`` stores the user's message and a pending
answer and returns their fragments; the page's script then POSTs to ``stream``, which answers
with Server-Sent Events (``start``, ``delta`` with plain text, then ``done`` or ``error`` with the
finished message rendered server-side, Markdown sanitized). ``choose`` records a "which is
better?" pick. Every view only ever sees the requesting user's own conversations.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

from django import forms
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from feedback_app.models import ChatMessage, Conversation
from feedback_app.services import chat
from feedback_app.services.errors import InvalidInput, NotFound, ServiceError
from feedback_app.views.forms import first_error

PAGE_TEMPLATE = "chat/page.html"
MAX_LISTED = 100


class SendForm(forms.Form):
    client_key = forms.CharField(max_length=64)
    # The length limit is the service's (a clear message with the numbers), not a form error.
    text = forms.CharField(strip=False)


class ChooseForm(forms.Form):
    client_key = forms.CharField(max_length=64)
    choice = forms.CharField(max_length=8)
    time_spent_ms = forms.IntegerField(required=False, min_value=0)


def _message_context(request: HttpRequest, message: ChatMessage) -> dict[str, Any]:
    conversation = message.conversation
    context: dict[str, Any] = {"message": message, "conversation": conversation}
    if message.status == ChatMessage.Status.CHOOSING:
        context["candidates"] = chat.candidates(message)
        context["choose_key"] = uuid.uuid4().hex
    return context


def _thread_context(request: HttpRequest, conversation: Conversation | None) -> dict[str, Any]:
    messages = chat.thread(conversation) if conversation else []
    rows = []
    for message in messages:
        row = {"message": message}
        if message.status == ChatMessage.Status.CHOOSING:
            row["candidates"] = chat.candidates(message)
            row["choose_key"] = uuid.uuid4().hex
        rows.append(row)
    last = messages[-1] if messages else None
    return {
        "conversation": conversation,
        "rows": rows,
        "composer": _composer_context(last),
    }


def _composer_context(last: ChatMessage | None) -> dict[str, Any]:
    waiting = last is not None and not (
        last.role == ChatMessage.Role.ASSISTANT and last.status == ChatMessage.Status.COMPLETE
    )
    return {
        "client_key": uuid.uuid4().hex,
        "max_chars": chat.max_message_chars(),
        "waiting": waiting,
        "choosing": last is not None and last.status == ChatMessage.Status.CHOOSING,
    }


def _page(
    request: HttpRequest,
    conversation: Conversation | None,
    *,
    status: int = 200,
    error: ServiceError | None = None,
) -> HttpResponse:
    context = _thread_context(request, conversation)
    context["error"] = error
    context["conversations"] = list(chat.conversations_for(request.user)[:MAX_LISTED])
    return render(request, PAGE_TEMPLATE, context, status=status)


def _error(
    request: HttpRequest, error: ServiceError, *, conversation_id: int | None = None, fragment: bool = False
) -> HttpResponse:
    """A 4xx answer: an inline message for htmx and scripts, the page with the message otherwise."""
    if request.htmx or fragment:
        response = render(request, "chat/_error.html", {"error": error}, status=error.status_code)
        response["HX-Retarget"] = "#chat-flash"
        response["HX-Reswap"] = "innerHTML"
        return response
    current = None
    if conversation_id is not None:
        current = Conversation.objects.filter(pk=conversation_id, user=request.user).first()
    return _page(request, current, status=error.status_code, error=error)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return _page(request, None)


@require_GET
def conversation(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        current = chat.get_conversation(request.user, conversation_id)
    except NotFound as error:
        raise Http404(error.message) from error
    return _page(request, current)


@require_POST
def send(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    form = SendForm(request.POST)
    try:
        if not form.is_valid():
            raise InvalidInput(first_error(form))
        sent = chat.send_message(
            user=request.user,
            text=form.cleaned_data["text"],
            client_key=form.cleaned_data["client_key"],
            conversation_id=conversation_id,
        )
    except ServiceError as error:
        return _error(request, error, conversation_id=conversation_id)
    url = reverse("chat-conversation", args=[sent.conversation.pk])
    if not request.htmx:
        return redirect(url)
    if conversation_id is None:
        # A new conversation: the whole chat pane and the list change; the address follows.
        context = _thread_context(request, sent.conversation)
        context["conversations"] = list(chat.conversations_for(request.user)[:MAX_LISTED])
        context["oob_sidebar"] = True
        response = render(request, "chat/_new.html", context)
        response["HX-Retarget"] = "#chat-main"
        response["HX-Reswap"] = "outerHTML"
        response["HX-Push-Url"] = url
        return response
    context = {
        "rows": [{"message": sent.user_message}, {"message": sent.reply}],
        "conversation": sent.conversation,
        "composer": _composer_context(sent.reply),
        "oob_composer": True,
    }
    return render(request, "chat/_sent.html", context)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


def _events(request: HttpRequest, events: Iterator[chat.Event]) -> Iterator[bytes]:
    yield b": stream open\n\n"  # headers and a first byte go out at once
    for name, data in events:
        if name in ("done", "error"):
            message = data["message"]
            html = render_to_string("chat/_message.html", _message_context(request, message), request=request)
            payload = {"html": html, "status": message.status}
            if name == "error":
                payload.update(detail=data["detail"], code=data["status"])
            yield _sse(name, payload)
        else:
            yield _sse(name, data)


@require_POST
def stream(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    try:
        events = chat.stream_answer(user=request.user, conversation_id=conversation_id, message_id=message_id)
    except ServiceError as error:
        return _error(request, error, fragment=True)
    response = StreamingHttpResponse(
        _events(request, events), content_type="text/event-stream; charset=utf-8"
    )
    response["Cache-Control"] = "no-cache, no-transform"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on as it comes
    return response


@require_POST
def choose(request: HttpRequest, conversation_id: int, message_id: int) -> HttpResponse:
    form = ChooseForm(request.POST)
    try:
        if not form.is_valid():
            raise InvalidInput(first_error(form))
        message = chat.choose(
            user=request.user,
            conversation_id=conversation_id,
            message_id=message_id,
            choice=form.cleaned_data["choice"],
            client_key=form.cleaned_data["client_key"],
            time_spent_ms=form.cleaned_data["time_spent_ms"] or 0,
        )
    except ServiceError as error:
        return _error(request, error, conversation_id=conversation_id)
    if not request.htmx:
        return redirect(reverse("chat-conversation", args=[conversation_id]))
    context = _message_context(request, message)
    context["composer"] = _composer_context(message)
    context["oob_composer"] = True
    return render(request, "chat/_chosen.html", context)


@require_POST
def delete(request: HttpRequest, conversation_id: int) -> HttpResponse:
    try:
        chat.delete_conversation(request.user, conversation_id)
    except ServiceError as error:
        return _error(request, error, conversation_id=conversation_id)
    url = reverse("chat")
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = url
        return response
    return redirect(url)
