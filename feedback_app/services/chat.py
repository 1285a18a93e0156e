"""The end-user chat: conversations, streamed answers, and "which is better?" comparisons.

A user's message and a pending assistant message are stored first (``send_message``); the answer
is then generated and streamed (``stream_answer``) and stored with the model version that wrote
it. Nothing typed is lost when generation fails: the assistant message is marked failed, with
whatever text arrived, and can be retried.

At ``CHAT_COMPARE_RATE`` an answer is produced twice: by the serving version and the version it
replaced (its rollback target), or, without one, by the serving version with two seeds. The two
candidates are shown side by side in a random order without their origin. They are stored like
any generated comparison item (two ``Response`` rows with their generation parameters) in the
chat feedback project, leased to the user alone (``judgements_wanted = 1``; the counters on the
item row move with the lease exactly as ``services.assignment`` moves them), and the user's pick
goes through ``services.judgements.submit_judgement``: the same validation, idempotency by client
key and constraints as a labeler's vote, so it reaches the preference export and the training
loop like any other judgement. The chosen candidate continues the conversation.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from feedback_app.env import env_float, env_int, env_str
from feedback_app.models import (
    Assignment,
    ChatMessage,
    ComparisonItem,
    Conversation,
    ItemResponse,
    ModelVersion,
    Project,
    Prompt,
    Response,
    messages_hash,
)
from feedback_app.services import generation, registry
from feedback_app.services.errors import Conflict, InvalidInput, NotFound, RateLimited, ServiceError
from feedback_app.services.judgements import active_judgements, submit_judgement
from trainer.generation.base import (
    BackendUnavailable,
    GenerationError,
    GenerationRequest,
    LimitExceeded,
    SamplingParams,
    UnknownModel,
)

log = logging.getLogger(__name__)

MAX_CLIENT_KEY = 64
TITLE_CHARS = 80
MAX_CONTEXT_MESSAGES = 64  # trainer.generation.base.Limits.max_messages
# A chat comparison belongs to its user's conversation: the lease is not reclaimed for other labelers
# (the item would otherwise show a private conversation to someone else); the user picks whenever
# they come back.
CHAT_LEASE = timedelta(days=3650)
UNAVAILABLE = (
    "The model is unavailable right now, so no answer could be written. "
    "Your message is saved: retry in a moment."
)
FEEDBACK_GUIDELINES = """\
Comparisons picked by chat users: each item is one user's "which is better?" choice between two
answers to their own conversation (the serving version against its predecessor, or two samples).
Every item is leased to that user only.
"""

CHOICES = {"1": "1", "2": "2", "tie": "tie", "=": "tie", "bad": "bad", "0": "bad"}

Event = tuple[str, dict[str, Any]]


def chat_config() -> dict[str, Any]:
    """Defaults from the environment; ``settings.CHAT`` (e.g. in tests) overrides them."""
    defaults = {
        # Share of answers produced twice and shown side by side ("which is better?").
        "COMPARE_RATE": env_float("CHAT_COMPARE_RATE", 0.2),
        "MAX_MESSAGE_CHARS": env_int("FEEDBACK_MAX_CHAT_MESSAGE_CHARS", 4000),
        "MAX_MESSAGES": env_int("FEEDBACK_MAX_CHAT_MESSAGES", 200),
        "MAX_TOKENS": env_int("CHAT_MAX_TOKENS", 256),
        "TEMPERATURE": env_float("CHAT_TEMPERATURE", 0.7),
        "FEEDBACK_PROJECT": env_str("CHAT_FEEDBACK_PROJECT", "Chat feedback"),
        # Answers one user may have being written at the same time (across conversations).
        "MAX_STREAMS_PER_USER": env_int("CHAT_MAX_STREAMS_PER_USER", 2),
    }
    return {**defaults, **getattr(settings, "CHAT", {})}


def max_message_chars() -> int:
    """A message must also fit the generation layer's prompt limit on its own."""
    return min(chat_config()["MAX_MESSAGE_CHARS"], generation.limits().max_prompt_chars)


# -- reading ------------------------------------------------------------------------------------
def conversations_for(user: AbstractBaseUser) -> QuerySet[Conversation]:
    return Conversation.objects.filter(user=user).only("id", "title", "updated_at")


def get_conversation(user: AbstractBaseUser, conversation_id: int) -> Conversation:
    """``user``'s own conversation; anyone else's is reported as not found."""
    conversation = Conversation.objects.filter(pk=conversation_id, user=user).first()
    if conversation is None:
        raise NotFound("No such conversation.")
    return conversation


def thread(conversation: Conversation) -> list[ChatMessage]:
    return list(conversation.messages.order_by("position"))


def get_message(user: AbstractBaseUser, conversation_id: int, message_id: int) -> ChatMessage:
    message = (
        ChatMessage.objects.filter(pk=message_id, conversation_id=conversation_id, conversation__user=user)
        .select_related("conversation")
        .first()
    )
    if message is None:
        raise NotFound("No such message.")
    return message


@dataclass(frozen=True)
class Candidate:
    """One side of a comparison as the user sees it: its display number and text, nothing else."""

    number: int
    text: str


def candidates(message: ChatMessage) -> list[Candidate]:
    """The two answers of a comparison, in the order recorded on the user's assignment."""
    if message.item_id is None:
        return []
    order = (
        Assignment.objects.filter(item_id=message.item_id, labeler_id=message.conversation.user_id)
        .values_list("shown_order", flat=True)
        .first()
    )
    if not order:
        return []
    texts = dict(Response.objects.filter(pk__in=order).values_list("pk", "text"))
    return [Candidate(number=i + 1, text=texts.get(rid, "")) for i, rid in enumerate(order)]


def choice_label(message: ChatMessage) -> str:
    """What the user picked on a finished comparison (for the small note under the answer)."""
    judgement = message.judgement
    if judgement is None:
        return ""
    if judgement.all_bad:
        return "both bad"
    if len(judgement.ranking) == 1:
        return "tie"
    return "preferred"


# -- sending ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sent:
    conversation: Conversation
    user_message: ChatMessage
    reply: ChatMessage
    created: bool  # False: a retry of a send already recorded (same client key)


def _check_client_key(client_key: str) -> str:
    if not isinstance(client_key, str) or not client_key.strip():
        raise InvalidInput("client_key is required: a unique string per message, reused on retries")
    if len(client_key.strip()) > MAX_CLIENT_KEY:
        raise InvalidInput(f"client_key is longer than {MAX_CLIENT_KEY} characters")
    return client_key.strip()


def check_text(text: Any) -> str:
    if not isinstance(text, str):
        raise InvalidInput("The message must be text.")
    text = text.replace("\r\n", "\n").strip()
    if not text:
        raise InvalidInput("The message is empty.")
    limit = max_message_chars()
    if len(text) > limit:
        raise InvalidInput(f"The message is {len(text)} characters long; the limit is {limit}.")
    return text


def _replay_send(user: AbstractBaseUser, client_key: str, conversation: Conversation | None) -> Sent | None:
    if conversation is None:
        conversation = Conversation.objects.filter(user=user, client_key=client_key).first()
        if conversation is None:
            return None
    sent = conversation.messages.filter(client_key=client_key, role=ChatMessage.Role.USER).first()
    if sent is None:
        return None
    reply = conversation.messages.filter(position=sent.position + 1).first()
    if reply is None:
        return None
    return Sent(conversation=conversation, user_message=sent, reply=reply, created=False)


def should_compare(rng: random.Random | None = None) -> bool:
    """Whether the next answer is a comparison: at the configured rate, when one makes sense."""
    cfg = chat_config()
    rate = float(cfg["COMPARE_RATE"])
    if rate <= 0 or (rng or random.SystemRandom()).random() >= rate:
        return False
    current = registry.serving_version()
    if current is None:
        return False
    # Two samples of one version only differ when sampling is random.
    return registry.previous_version(current) is not None or float(cfg["TEMPERATURE"]) > 0


def _blocking_reason(last: ChatMessage | None) -> str:
    if last is None or (
        last.role == ChatMessage.Role.ASSISTANT and last.status == ChatMessage.Status.COMPLETE
    ):
        return ""
    if last.status == ChatMessage.Status.CHOOSING:
        return "Pick the better answer first (1, 2, = for a tie, 0 if both are bad)."
    if last.status == ChatMessage.Status.FAILED:
        return "The last answer did not finish: retry it first."
    return "The last answer is still being written; wait for it to finish."


def send_message(
    *,
    user: AbstractBaseUser,
    text: Any,
    client_key: str,
    conversation_id: int | None = None,
    rng: random.Random | None = None,
    now: datetime | None = None,
) -> Sent:
    """Store the user's message and a pending answer (generated by ``stream_answer``).

    Without ``conversation_id`` a new conversation is started. The same ``client_key`` sent
    again returns what the first request stored (a double click never sends twice).
    """
    now = now or timezone.now()
    client_key = _check_client_key(client_key)
    text = check_text(text)
    conversation = get_conversation(user, conversation_id) if conversation_id is not None else None
    replay = _replay_send(user, client_key, conversation)
    if replay is not None:
        return replay
    compare = should_compare(rng)
    try:
        with transaction.atomic():
            if conversation is None:
                conversation = Conversation.objects.create(
                    user=user, title=_title(text), client_key=client_key, created_at=now, updated_at=now
                )
            else:
                conversation = Conversation.objects.select_for_update().get(pk=conversation.pk)
            last = conversation.messages.order_by("-position").first()
            reason = _blocking_reason(last)
            if reason:
                raise Conflict(reason)
            position = last.position + 1 if last else 0
            limit = chat_config()["MAX_MESSAGES"]
            if position + 2 > limit:
                raise InvalidInput(
                    f"This conversation has reached its limit of {limit} messages: start a new one."
                )
            user_message = ChatMessage.objects.create(
                conversation=conversation,
                position=position,
                role=ChatMessage.Role.USER,
                content=text,
                client_key=client_key,
                created_at=now,
                finished_at=now,
            )
            reply = ChatMessage.objects.create(
                conversation=conversation,
                position=position + 1,
                role=ChatMessage.Role.ASSISTANT,
                status=ChatMessage.Status.PENDING,
                compare=compare,
                created_at=now,
            )
            Conversation.objects.filter(pk=conversation.pk).update(updated_at=now)
    except IntegrityError:
        # The same send raced with itself (double click): answer with what the other one stored.
        replay = _replay_send(user, client_key, None if conversation_id is None else conversation)
        if replay is None:
            raise
        return replay
    return Sent(conversation=conversation, user_message=user_message, reply=reply, created=True)


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line[: TITLE_CHARS - 1] + "…" if len(line) > TITLE_CHARS else line


def delete_conversation(user: AbstractBaseUser, conversation_id: int) -> None:
    """Delete the conversation; choices already made stay in the feedback project (training data)."""
    get_conversation(user, conversation_id).delete()


# -- generating -----------------------------------------------------------------------------------
def _stale_after() -> timedelta:
    return timedelta(seconds=float(generation.generation_config()["REQUEST_TIMEOUT_S"]) + 60)


def _claim(
    user: AbstractBaseUser, conversation_id: int, message_id: int, now: datetime
) -> tuple[bool, ChatMessage]:
    """Mark a pending (or failed, or stale) answer as streaming. False: it is already finished."""
    with transaction.atomic():
        message = (
            ChatMessage.objects.select_for_update()
            .filter(pk=message_id, conversation_id=conversation_id, conversation__user=user)
            .select_related("conversation")
            .first()
        )
        if message is None or message.role != ChatMessage.Role.ASSISTANT:
            raise NotFound("No such answer.")
        if message.status in (ChatMessage.Status.COMPLETE, ChatMessage.Status.CHOOSING):
            return False, message
        if message.status == ChatMessage.Status.STREAMING and (
            message.started_at and now - message.started_at < _stale_after()
        ):
            raise Conflict("This answer is being written in another window; reload to see it.")
        busy = (
            ChatMessage.objects.filter(
                conversation__user=user,
                status=ChatMessage.Status.STREAMING,
                started_at__gt=now - _stale_after(),
            )
            .exclude(pk=message.pk)
            .count()
        )
        if busy >= int(chat_config()["MAX_STREAMS_PER_USER"]):
            raise RateLimited(
                f"You already have {busy} answer(s) being written; wait for them to finish.", retry_after=5
            )
        message.status = ChatMessage.Status.STREAMING
        message.started_at = now
        message.content = ""
        message.error = ""
        message.save(update_fields=["status", "started_at", "content", "error"])
    return True, message


def context(message: ChatMessage) -> list[dict[str, str]]:
    """The finished turns before ``message``, as chat messages, ending with the user's message."""
    rows = ChatMessage.objects.filter(
        conversation_id=message.conversation_id,
        position__lt=message.position,
        status=ChatMessage.Status.COMPLETE,
    ).order_by("position")
    return [{"role": role, "content": content} for role, content in rows.values_list("role", "content")]


def fit_context(messages: list[dict[str, str]], *, max_chars: int, max_messages: int) -> list[dict[str, str]]:
    """The most recent turns that fit the limits, starting with a user message."""
    kept: list[dict[str, str]] = []
    used = 0
    for m in reversed(messages):
        if kept and (used + len(m["content"]) > max_chars or len(kept) >= max_messages):
            break
        kept.append(m)
        used += len(m["content"])
    kept.reverse()
    while len(kept) > 1 and kept[0]["role"] != ChatMessage.Role.USER:
        kept.pop(0)
    return kept


def _shorter(messages: list[dict[str, str]]) -> list[dict[str, str]] | None:
    """About half the history (whole turns), or None when only the last message is left."""
    if len(messages) <= 1:
        return None
    return fit_context(messages, max_chars=1 << 62, max_messages=max(1, len(messages) // 2))


def _sampling(seed: int | None = None) -> SamplingParams:
    cfg = chat_config()
    max_tokens = min(int(cfg["MAX_TOKENS"]), generation.limits().max_tokens)
    return SamplingParams(temperature=float(cfg["TEMPERATURE"]), max_tokens=max_tokens, seed=seed)


def version_for_model(name: str) -> ModelVersion | None:
    """The registered version a backend model name belongs to (a LoRA name, or full weights)."""
    if not name:
        return None
    version = ModelVersion.objects.filter(lora_name=name).first()
    if version is not None:
        return version
    current = registry.serving_version()
    if current is not None and registry.model_name(current) == name:
        return current
    for candidate in ModelVersion.objects.filter(lora_name="").order_by("-served_since", "-pk")[:50]:
        if registry.model_name(candidate) == name:
            return candidate
    return None


def _friendly(error: BaseException) -> ServiceError:
    if isinstance(error, ServiceError):
        if isinstance(error, generation.GenerationUnavailable):
            return generation.GenerationUnavailable(UNAVAILABLE, details=error.message)
        return error
    if isinstance(error, BackendUnavailable | UnknownModel):
        return generation.GenerationUnavailable(UNAVAILABLE, details=str(error))
    if isinstance(error, LimitExceeded):
        return InvalidInput(f"The conversation is too long for the model: {error}. Start a new conversation.")
    return generation.GenerationUnavailable(
        "The model could not answer this time. Your message is saved: retry.", details=str(error)
    )


def _retryable_with_less(error: BaseException) -> bool:
    """Errors that a shorter history may fix (a context that is too long), before any text came."""
    if isinstance(error, BackendUnavailable | UnknownModel | generation.GenerationUnavailable):
        return False
    return isinstance(error, LimitExceeded | InvalidInput | GenerationError)


Opener = Callable[[list[dict[str, str]]], Iterator[str]]


def _open(
    open_stream: Opener, history: list[dict[str, str]]
) -> tuple[list[dict[str, str]], str, Iterator[str]]:
    """Start a stream and read its first piece, dropping older turns while the context is too long."""
    while True:
        try:
            pieces = open_stream(history)
            first = next(pieces, "")
        except Exception as error:
            shorter = _shorter(history) if _retryable_with_less(error) else None
            if shorter is None:
                raise
            log.info(
                "chat context of %d messages refused (%s); retrying with %d",
                len(history),
                error,
                len(shorter),
            )
            history = shorter
            continue
        return history, first, pieces


def _single_opener(model_box: list[str], params: SamplingParams) -> Opener:
    def open_stream(history: list[dict[str, str]]) -> Iterator[str]:
        model, pieces = generation.chat_stream(history, params)  # resolves the serving alias once
        model_box[:] = [model]
        return pieces

    return open_stream


def _version_opener(model: str, params: SamplingParams) -> Opener:
    def open_stream(history: list[dict[str, str]]) -> Iterator[str]:
        request = GenerationRequest(model=model, messages=history, params=params)
        try:
            request.validate(generation.limits())
        except LimitExceeded as e:
            raise InvalidInput(str(e)) from e
        return generation.get_backend().stream(request)

    return open_stream


def stream_answer(
    *, user: AbstractBaseUser, conversation_id: int, message_id: int, now: datetime | None = None
) -> Iterator[Event]:
    """Generate a pending answer, yielding ``(event, data)``: ``start``, ``delta``*, ``done`` | ``error``.

    ``delta`` data is ``{"slot", "text"}`` (slot 0, or 0/1 for the two sides of a comparison);
    ``done`` and ``error`` carry the stored ``message``. An answer that is already finished is
    answered with ``done`` at once (reloads and retries never generate twice). Ownership and
    state are checked before the first event, so a refusal raises instead of streaming.
    """
    claimed, message = _claim(user, conversation_id, message_id, now or timezone.now())
    if not claimed:
        return iter([("done", {"message": message})])
    return _generate(message)


def _generate(message: ChatMessage) -> Iterator[Event]:
    finished = False
    partial: list[str] = []
    try:
        history = fit_context(
            context(message),
            max_chars=generation.limits().max_prompt_chars,
            max_messages=MAX_CONTEXT_MESSAGES,
        )
        if not history or history[-1]["role"] != ChatMessage.Role.USER:
            raise Conflict("There is no question to answer here.")
        plan = _comparison_plan() if message.compare else None
        yield "start", {"slots": 2 if plan else 1}
        if plan:
            yield from _generate_comparison(message, history, plan)
        else:
            yield from _generate_single(message, history, partial)
        finished = True  # stored: from here on a closed connection changes nothing
        yield "done", {"message": message}
    except Exception as error:
        failure = _friendly(error)
        if not isinstance(error, ServiceError | GenerationError):
            log.exception("chat answer %s failed", message.pk)
        _fail(message, failure.message, "".join(partial))
        finished = True
        yield "error", {"message": message, "detail": failure.message, "status": failure.status_code}
    finally:
        if not finished:  # the browser went away mid-answer: keep what arrived, allow a retry
            _fail(message, "The answer was interrupted.", "".join(partial))


def _fail(message: ChatMessage, error: str, partial: str) -> None:
    message.status = ChatMessage.Status.FAILED
    message.error = error
    message.content = partial
    message.finished_at = timezone.now()
    message.save(update_fields=["status", "error", "content", "finished_at"])


def _clip(pieces: list[str], piece: str) -> str:
    """The part of a model's piece that is stored: storable text, within the output limit."""
    piece = generation.storable_text(piece)
    room = generation.limits().max_output_chars - sum(len(p) for p in pieces)
    return piece[: max(0, room)]


def _generate_single(
    message: ChatMessage, history: list[dict[str, str]], partial: list[str]
) -> Iterator[Event]:
    params = _sampling(seed=random.SystemRandom().randrange(2**31))
    model_box: list[str] = []
    history, first, pieces = _open(_single_opener(model_box, params), history)
    for piece in _chain(first, pieces):
        piece = _clip(partial, piece)
        if piece:
            partial.append(piece)
            yield "delta", {"slot": 0, "text": piece}
    model = model_box[0] if model_box else ""
    message.content = "".join(partial)
    message.model_version = version_for_model(model)
    message.generation_params = {
        **params.to_dict(),
        "model": model,
        "backend": generation.generation_config()["BACKEND"],
        "context_messages": len(history),
    }
    message.status = ChatMessage.Status.COMPLETE
    message.finished_at = timezone.now()
    message.save(update_fields=["content", "model_version", "generation_params", "status", "finished_at"])


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    if first:
        yield first
    yield from rest


@dataclass(frozen=True)
class _Side:
    version: ModelVersion
    model: str
    params: SamplingParams


def _comparison_plan() -> list[_Side] | None:
    """Two sides in display order: serving vs previous version, or the serving version twice."""
    current = registry.serving_version()
    if current is None:
        return None
    previous = registry.previous_version(current)
    rng = random.SystemRandom()
    seeds = rng.sample(range(2**31), 2)
    versions = [current, previous] if previous is not None else [current, current]
    sides = [
        _Side(v, registry.model_name(v), _sampling(seed)) for v, seed in zip(versions, seeds, strict=True)
    ]
    rng.shuffle(sides)  # the display order says nothing about the version
    return sides


def _generate_comparison(
    message: ChatMessage, history: list[dict[str, str]], sides: list[_Side]
) -> Iterator[Event]:
    # Open both streams first (the first one finds a context the model accepts), then read them
    # concurrently: with vLLM the two answers are written at the same time.
    history, first_a, rest_a = _open(_version_opener(sides[0].model, sides[0].params), history)
    _, first_b, rest_b = _open(_version_opener(sides[1].model, sides[1].params), history)
    texts: list[list[str]] = [[], []]
    events: queue.Queue[tuple[int, str | None, BaseException | None]] = queue.Queue()
    stop = threading.Event()

    def pump(slot: int, first: str, rest: Iterator[str]) -> None:
        try:
            for piece in _chain(first, rest):
                if stop.is_set():
                    break
                events.put((slot, piece, None))
        except BaseException as error:
            events.put((slot, None, error))
            return
        finally:
            close = getattr(rest, "close", None)
            if close is not None and stop.is_set():
                close()
        events.put((slot, None, None))

    threads = [
        threading.Thread(target=pump, args=(0, first_a, rest_a), daemon=True),
        threading.Thread(target=pump, args=(1, first_b, rest_b), daemon=True),
    ]
    for t in threads:
        t.start()
    running = 2
    try:
        while running:
            slot, piece, error = events.get()
            if error is not None:
                raise error
            if piece is None:
                running -= 1
                continue
            piece = _clip(texts[slot], piece)
            if piece:
                texts[slot].append(piece)
                yield "delta", {"slot": slot, "text": piece}
    finally:
        stop.set()
    for t in threads:
        t.join(timeout=5)
    _store_comparison(message, history, sides, ["".join(t) for t in texts])


def feedback_project() -> Project:
    """The project that collects chat users' choices (created on first use)."""
    project, _ = Project.objects.get_or_create(
        name=chat_config()["FEEDBACK_PROJECT"],
        defaults={
            "guidelines": FEEDBACK_GUIDELINES,
            "responses_per_item": 2,
            "judgements_per_item": 1,
            "gold_rate": 0.0,
        },
    )
    return project


def _prompt_for(project: Project, history: list[dict[str, str]]) -> Prompt:
    """The conversation so far as a prompt of the project (identical conversations share one)."""
    content_hash = messages_hash(history)
    prompt = Prompt.objects.filter(project=project, content_hash=content_hash).first()
    if prompt is not None:
        return prompt
    try:
        with transaction.atomic():
            return Prompt.objects.create(project=project, messages=history, metadata={"source": "chat"})
    except IntegrityError:
        return Prompt.objects.get(project=project, content_hash=content_hash)


def _store_comparison(
    message: ChatMessage, history: list[dict[str, str]], sides: list[_Side], texts: list[str]
) -> None:
    """Both candidates as a comparison item leased to the user, in the order they were shown."""
    project = feedback_project()
    user_id = message.conversation.user_id
    now = timezone.now()
    backend_kind = generation.generation_config()["BACKEND"]
    with transaction.atomic():
        prompt = _prompt_for(project, history)
        responses = Response.objects.bulk_create(
            [
                Response(
                    prompt=prompt,
                    model_version=side.version,
                    text=text,
                    generation_params={
                        **side.params.to_dict(),
                        "sample_index": 0,
                        "model": side.model,
                        "backend": backend_kind,
                        "source": "chat",
                        "chat_message": message.pk,
                    },
                    created_at=now,
                )
                for side, text in zip(sides, texts, strict=True)
            ]
        )
        # The user holds the item's only slot from the start: judgement_count + active_leases
        # never exceeds judgements_wanted (the item_never_over_k constraint), as for any lease.
        item = ComparisonItem.objects.create(
            project=project, prompt=prompt, judgements_wanted=1, active_leases=1, created_at=now
        )
        ItemResponse.objects.bulk_create(
            [ItemResponse(item=item, response=r, position=i) for i, r in enumerate(responses)]
        )
        Assignment.objects.create(
            item=item,
            labeler_id=user_id,
            shown_order=[r.pk for r in responses],
            leased_at=now,
            expires_at=now + CHAT_LEASE,
        )
        message.item = item
        message.status = ChatMessage.Status.CHOOSING
        message.generation_params = {"comparison": True, "context_messages": len(history)}
        message.finished_at = now
        message.save(update_fields=["item", "status", "generation_params", "finished_at"])


# -- choosing -------------------------------------------------------------------------------------
def choose(
    *,
    user: AbstractBaseUser,
    conversation_id: int,
    message_id: int,
    choice: str,
    client_key: str,
    time_spent_ms: int = 0,
) -> ChatMessage:
    """Record the user's pick between the two answers; the chosen one continues the conversation.

    ``choice``: ``1`` or ``2`` (display numbers), ``tie`` (``=``) or ``bad`` (``0``, both bad);
    after a tie or "both bad" answer 1 continues. The judgement goes through
    ``submit_judgement``: the same ``client_key`` again returns the first result.
    """
    kind = CHOICES.get(str(choice).strip().lower())
    if kind is None:
        raise InvalidInput("Choose 1, 2, tie or bad.")
    client_key = _check_client_key(client_key)
    message = get_message(user, conversation_id, message_id)
    if message.item_id is None:
        raise Conflict("This answer is not a comparison.")
    if message.status == ChatMessage.Status.COMPLETE:
        if message.judgement_id and message.judgement.client_key == client_key:
            return message  # a retry of the choice already recorded
        raise Conflict("You already chose for this answer.")
    if message.status != ChatMessage.Status.CHOOSING:
        raise Conflict("This comparison is not waiting for a choice.")
    assignment = Assignment.objects.filter(item_id=message.item_id, labeler=user).first()
    if assignment is None:
        raise Conflict("This comparison is not yours to judge.")
    first, second = (int(rid) for rid in assignment.shown_order)
    ranking = {
        "1": [[first], [second]],
        "2": [[second], [first]],
        "tie": [[first, second]],
        "bad": [[first, second]],
    }[kind]
    judgement = None
    try:
        judgement = submit_judgement(
            labeler=user,
            item_id=message.item_id,
            ranking=ranking,
            client_key=client_key,
            all_bad=kind == "bad",
            time_spent_ms=max(0, int(time_spent_ms or 0)),
            project_id=message.item.project_id,
        ).judgement
    except Conflict:
        assignment.refresh_from_db()
        earlier = None
        if assignment.status == Assignment.Status.SUBMITTED:
            earlier = active_judgements().filter(item_id=message.item_id, labeler=user).first()
        if earlier is not None:
            # Already judged elsewhere (the labeler page of the chat feedback project): that pick stands.
            judgement = earlier
            kind = "bad" if earlier.all_bad else "2" if earlier.ranking[0] == [second] else "1"
        elif assignment.status == Assignment.Status.EXPIRED:
            # The lease was reclaimed and the slot went elsewhere: the pick is not recorded; the chat goes on.
            log.info("chat comparison %s expired before the choice", message.item_id)
        else:
            raise
    winner_id = second if kind == "2" else first
    winner = Response.objects.get(pk=winner_id)
    with transaction.atomic():
        locked = ChatMessage.objects.select_for_update().get(pk=message.pk)
        if locked.status == ChatMessage.Status.CHOOSING:
            locked.content = winner.text
            locked.model_version_id = winner.model_version_id
            locked.generation_params = {**winner.generation_params, "comparison": True, "choice": kind}
            locked.response = winner
            locked.judgement = judgement
            locked.status = ChatMessage.Status.COMPLETE
            locked.save(
                update_fields=[
                    "content",
                    "model_version",
                    "generation_params",
                    "response",
                    "judgement",
                    "status",
                ]
            )
            Conversation.objects.filter(pk=locked.conversation_id).update(updated_at=timezone.now())
    locked.conversation = message.conversation
    return locked
