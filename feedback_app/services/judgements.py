"""Recording judgements: validated, idempotent, rate-limited, never edited in place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone
from psycopg.types.json import Jsonb

from feedback_app.models import ComparisonItem, ItemResponse, Judgement
from feedback_app.services.assignment import (
    Lease,
    call_json_function,
    lease_from_row,
    lease_next_item,
    lease_request,
    mark_loaded,
)
from feedback_app.services.errors import Conflict, InvalidInput, NotFound
from feedback_app.services.ranking import MAX_ID, normalize_ranking, parse_ranking
from feedback_app.services.ratelimit import check_vote_rate, too_many_votes, vote_rate

MAX_CLIENT_KEY = 64


def _check_text(value: str | None, *, field: str, limit: int) -> str:
    value = value or ""
    if not isinstance(value, str):
        raise InvalidInput(f"{field} must be text")
    if len(value) > limit:
        raise InvalidInput(f"{field} is {len(value)} characters long; the limit is {limit}")
    return value.strip()


def _check_client_key(client_key: str) -> str:
    if not isinstance(client_key, str) or not client_key.strip():
        raise InvalidInput("client_key is required: a unique string per submission, reused on retries")
    if len(client_key) > MAX_CLIENT_KEY:
        raise InvalidInput(f"client_key is longer than {MAX_CLIENT_KEY} characters")
    return client_key.strip()


def _replay(labeler: AbstractBaseUser, client_key: str, item_id: int) -> SubmitResult | None:
    previous = Judgement.objects.filter(labeler=labeler, client_key=client_key).first()
    if previous is None:
        return None
    if previous.item_id != item_id:
        raise Conflict(f"client_key {client_key!r} was already used for a judgement on another item")
    return SubmitResult(judgement=previous, created=False)


_SUBMIT_SQL = "SELECT feedback_submit_judgement(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"


@dataclass(frozen=True)
class SubmitResult:
    judgement: Judgement
    created: bool
    # With ``lease_next``: the labeler's next lease (None when nothing is left for them).
    next_lease: Lease | None = None


def _judgement_from_row(row: dict[str, Any], labeler: AbstractBaseUser) -> Judgement:
    judgement = Judgement(
        id=row["id"],
        item_id=row["item_id"],
        labeler=labeler,
        assignment_id=row["assignment_id"],
        ranking=row["ranking"],
        all_bad=row["all_bad"],
        rationale=row["rationale"],
        shown_order=row["shown_order"],
        time_spent_ms=row["time_spent_ms"],
        client_key=row["client_key"],
        supersedes_id=row["supersedes_id"],
        created_at=datetime.fromisoformat(row["created_at"]),
    )
    mark_loaded(judgement)
    return judgement


def submit_judgement(
    *,
    labeler: AbstractBaseUser,
    item_id: int,
    ranking: Any,
    client_key: str,
    all_bad: bool = False,
    rationale: str = "",
    time_spent_ms: int = 0,
    demonstration: str = "",
    project_id: int | None = None,
    lease_next: bool = False,
    now: datetime | None = None,
) -> SubmitResult:
    """Record ``labeler``'s ranking of a leased item (of ``project_id``, when given).

    Sending the same ``client_key`` again returns the first judgement unchanged
    (a double click or a retry never records twice, and is never rate-limited).
    With ``lease_next``, the labeler's next item in the item's project is leased in the same
    statement (``SubmitResult.next_lease``). One round trip to PostgreSQL: the
    checks that need the database, the writes and the next lease run in the
    function ``feedback_submit_judgement`` (migration 0004).
    """
    now = now or timezone.now()
    limits = settings.FEEDBACK
    client_key = _check_client_key(client_key)
    rationale = _check_text(rationale, field="rationale", limit=limits["MAX_RATIONALE_CHARS"])
    demonstration = _check_text(demonstration, field="demonstration", limit=limits["MAX_DEMONSTRATION_CHARS"])
    if isinstance(time_spent_ms, bool) or not isinstance(time_spent_ms, int) or time_spent_ms < 0:
        raise InvalidInput("time_spent_ms must be a non-negative integer")
    time_spent_ms = min(time_spent_ms, limits["MAX_TIME_SPENT_MS"])
    if not isinstance(item_id, int) or isinstance(item_id, bool) or not 0 < item_id <= MAX_ID:
        raise NotFound(f"Item {item_id} does not exist.")
    groups = parse_ranking(ranking)
    rate_limit, rate_window = vote_rate()
    lease = lease_request() if lease_next else None
    params = [
        labeler.pk,
        item_id,
        project_id,
        Jsonb(groups),
        sorted(rid for group in groups for rid in group),
        bool(all_bad),
        rationale,
        time_spent_ms,
        client_key,
        demonstration,
        now,
        Jsonb(lease) if lease is not None else None,
        rate_limit,
        rate_window,
    ]
    try:
        row = call_json_function(_SUBMIT_SQL, params)
    except IntegrityError:
        # Two requests with one client key raced: the other one won; answer with its judgement.
        replay = _replay(labeler, client_key, item_id)
        if replay is None:
            raise
        return replay
    outcome = row["outcome"]
    if outcome == "created":
        next_lease = lease_from_row(row["next"]) if row["next"] else None
        return SubmitResult(_judgement_from_row(row["judgement"], labeler), True, next_lease)
    if outcome == "replay":
        next_lease = None
        if lease_next:
            project = project_id or ComparisonItem.objects.get(pk=item_id).project_id
            next_lease = lease_next_item(project=project, labeler=labeler, now=now)
        return SubmitResult(_judgement_from_row(row["judgement"], labeler), False, next_lease)
    _raise_for(outcome, row, item_id=item_id, project_id=project_id, client_key=client_key, groups=groups)
    raise AssertionError(f"unknown outcome {outcome!r}")  # pragma: no cover


def _raise_for(
    outcome: str, row: dict[str, Any], *, item_id: int, project_id: int | None, client_key: str, groups
) -> None:
    """Turn a refusal of ``feedback_submit_judgement`` into the service error that explains it."""
    if outcome == "no_project":
        raise NotFound(f"Project {project_id} does not exist or is not active.")
    if outcome == "not_found":
        raise NotFound(f"Item {item_id} does not exist.")
    if outcome == "wrong_project":
        raise InvalidInput(f"Item {item_id} is not part of project {project_id}.")
    if outcome == "not_leased":
        raise Conflict(f"Item {item_id} is not leased to you; fetch your next item first.")
    if outcome == "key_conflict":
        raise Conflict(f"client_key {client_key!r} was already used for a judgement on another item")
    if outcome == "already_judged":
        raise Conflict(
            f"You already judged item {item_id}; to change your answer, send a correction "
            "that supersedes your judgement."
        )
    if outcome == "skipped":
        raise Conflict(f"You skipped item {item_id}; it is no longer leased to you.")
    if outcome == "rate_limited":
        raise too_many_votes(max(0.001, float(row["retry_after"])))
    if outcome == "ranking_mismatch":
        normalize_ranking(groups, row["shown_order"])  # raises with the exact difference
    if outcome == "slot_taken":
        raise Conflict(
            f"Your lease on item {item_id} expired and the item was given to other labelers; "
            "fetch your next item."
        )


def correct_judgement(
    *,
    labeler: AbstractBaseUser,
    judgement_id: int,
    ranking: Any,
    client_key: str,
    all_bad: bool = False,
    rationale: str = "",
    time_spent_ms: int = 0,
    now: datetime | None = None,
) -> SubmitResult:
    """Replace one of the labeler's own judgements with a new one that supersedes it."""
    now = now or timezone.now()
    client_key = _check_client_key(client_key)
    rationale = _check_text(rationale, field="rationale", limit=settings.FEEDBACK["MAX_RATIONALE_CHARS"])
    old = Judgement.objects.filter(pk=judgement_id, labeler=labeler).first()
    if old is None:
        raise NotFound(f"Judgement {judgement_id} is not one of yours.")
    replay = _replay(labeler, client_key, old.item_id)
    if replay is not None:
        return replay
    check_vote_rate(labeler.pk, now)
    response_ids = list(
        ItemResponse.objects.filter(item_id=old.item_id).values_list("response_id", flat=True)
    )
    groups = normalize_ranking(ranking, response_ids)
    try:
        with transaction.atomic():
            locked = Judgement.objects.select_for_update().get(pk=old.pk)
            if Judgement.objects.filter(supersedes=locked).exists():
                raise Conflict(f"Judgement {judgement_id} was already corrected; correct the newest one.")
            judgement = Judgement.objects.create(
                item_id=old.item_id,
                labeler=labeler,
                assignment_id=old.assignment_id,
                ranking=groups,
                all_bad=bool(all_bad),
                rationale=rationale,
                shown_order=old.shown_order,
                time_spent_ms=max(0, int(time_spent_ms)),
                client_key=client_key,
                supersedes=locked,
                created_at=now,
            )
    except IntegrityError:
        replay = _replay(labeler, client_key, old.item_id)
        if replay is None:
            raise
        return replay
    return SubmitResult(judgement=judgement, created=True)


def active_judgements():
    """Judgements not superseded by a correction."""
    return Judgement.objects.filter(superseded_by__isnull=True)
