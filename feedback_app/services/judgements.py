"""Recording judgements: validated, idempotent, rate-limited, never edited in place."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from feedback_app.models import Assignment, ComparisonItem, Demonstration, ItemResponse, Judgement
from feedback_app.services.errors import Conflict, InvalidInput, NotFound
from feedback_app.services.ranking import normalize_ranking
from feedback_app.services.ratelimit import check_vote_rate

MAX_CLIENT_KEY = 64


@dataclass(frozen=True)
class SubmitResult:
    judgement: Judgement
    created: bool


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
    now: datetime | None = None,
) -> SubmitResult:
    """Record ``labeler``'s ranking of a leased item (of ``project_id``, when given).

    Sending the same ``client_key`` again returns the first judgement unchanged
    (a double click or a retry never records twice).
    """
    now = now or timezone.now()
    limits = settings.FEEDBACK
    client_key = _check_client_key(client_key)
    rationale = _check_text(rationale, field="rationale", limit=limits["MAX_RATIONALE_CHARS"])
    demonstration = _check_text(demonstration, field="demonstration", limit=limits["MAX_DEMONSTRATION_CHARS"])
    if isinstance(time_spent_ms, bool) or not isinstance(time_spent_ms, int) or time_spent_ms < 0:
        raise InvalidInput("time_spent_ms must be a non-negative integer")
    time_spent_ms = min(time_spent_ms, limits["MAX_TIME_SPENT_MS"])

    try:
        with transaction.atomic():
            leases = Assignment.objects.select_for_update().filter(item_id=item_id, labeler=labeler)
            if project_id is not None:
                leases = leases.filter(item__project_id=project_id)
            assignment = leases.first()
            if assignment is None:
                _explain_missing_lease(item_id, project_id)
            if assignment.status == Assignment.Status.SUBMITTED:
                # A retry or a double click: answer with the judgement already recorded.
                replay = _replay(labeler, client_key, item_id)
                if replay is not None:
                    return replay
                raise Conflict(
                    f"You already judged item {item_id}; to change your answer, send a correction "
                    "that supersedes your judgement."
                )
            if assignment.status == Assignment.Status.SKIPPED:
                raise Conflict(f"You skipped item {item_id}; it is no longer leased to you.")
            # The shown order holds exactly the item's response ids.
            groups = normalize_ranking(ranking, assignment.shown_order)
            check_vote_rate(labeler.pk)
            if assignment.status == Assignment.Status.EXPIRED:
                _retake_expired_slot(item_id)
            judgement = Judgement.objects.create(
                item_id=item_id,
                labeler=labeler,
                assignment=assignment,
                ranking=groups,
                all_bad=bool(all_bad),
                rationale=rationale,
                shown_order=assignment.shown_order,
                time_spent_ms=time_spent_ms,
                client_key=client_key,
                created_at=now,
            )
            if demonstration:
                Demonstration.objects.create(
                    prompt_id=ComparisonItem.objects.values_list("prompt_id", flat=True).get(pk=item_id),
                    item_id=item_id,
                    labeler=labeler,
                    text=demonstration,
                    judgement=judgement,
                    created_at=now,
                )
            Assignment.objects.filter(pk=assignment.pk).update(
                status=Assignment.Status.SUBMITTED, finished_at=now
            )
            ComparisonItem.objects.filter(pk=item_id).update(
                judgement_count=F("judgement_count") + 1,
                active_leases=F("active_leases") - 1,
                status=Case(
                    When(
                        Q(is_gold=False) & Q(judgement_count__gte=F("judgements_wanted") - 1),
                        then=Value(ComparisonItem.Status.COMPLETE),
                    ),
                    default=F("status"),
                ),
            )
    except IntegrityError:
        # Two requests with one client key raced: the other one won; answer with its judgement.
        replay = _replay(labeler, client_key, item_id)
        if replay is None:
            raise
        return replay
    return SubmitResult(judgement=judgement, created=True)


def _explain_missing_lease(item_id: int, project_id: int | None) -> None:
    items = ComparisonItem.objects.filter(pk=item_id)
    if not items.exists():
        raise NotFound(f"Item {item_id} does not exist.")
    if project_id is not None and not items.filter(project_id=project_id).exists():
        raise InvalidInput(f"Item {item_id} is not part of project {project_id}.")
    raise Conflict(f"Item {item_id} is not leased to you; fetch your next item first.")


def _retake_expired_slot(item_id: int) -> None:
    """A late answer on a reclaimed lease still counts if the item has room for it."""
    taken = ComparisonItem.objects.filter(
        Q(is_gold=True) | Q(judgement_count__lt=F("judgements_wanted") - F("active_leases")),
        pk=item_id,
        status=ComparisonItem.Status.OPEN,
    ).update(active_leases=F("active_leases") + 1)
    if not taken:
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
    check_vote_rate(labeler.pk)
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
