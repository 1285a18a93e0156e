"""Handing items to labelers, safe under concurrency.

Invariants, enforced by PostgreSQL rather than by hope:
- an item's ``judgement_count + active_leases`` never exceeds ``judgements_wanted``:
  the counters live on the item row, which is locked (``FOR UPDATE SKIP LOCKED``)
  while a lease is taken, and the check constraint ``item_never_over_k`` backs it;
- a labeler gets an item at most once: a unique constraint on (item, labeler);
- a lease that expires is reclaimed and its slot goes back to the queue.
Gold items have a known answer and are shown to every labeler once, at
``project.gold_rate``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import F
from django.utils import timezone

from feedback_app.models import Assignment, ComparisonItem, ItemResponse, Project
from feedback_app.services.errors import Conflict, NotFound

RECLAIM_EVERY_SECONDS = 5
RECLAIM_BATCH = 1000

_PICK_ITEM_SQL = """
SELECT i.id FROM feedback_app_comparisonitem i
WHERE i.project_id = %(project)s
  AND i.status = 'open'
  AND i.is_gold = %(gold)s
  AND (i.is_gold OR i.judgement_count + i.active_leases < i.judgements_wanted)
  AND NOT EXISTS (
      SELECT 1 FROM feedback_app_assignment a
      WHERE a.item_id = i.id AND a.labeler_id = %(labeler)s
  )
ORDER BY i.id
LIMIT 1
FOR UPDATE OF i SKIP LOCKED
"""

_TAKE_SLOT_SQL = """
UPDATE feedback_app_comparisonitem SET active_leases = active_leases + 1
WHERE id = %(item)s
RETURNING id, project_id, prompt_id, is_gold, gold_ranking, judgements_wanted, judgement_count,
          active_leases, status, created_at
"""

_RECLAIM_SQL = """
WITH expired AS (
    UPDATE feedback_app_assignment SET status = 'expired', finished_at = %(now)s
    WHERE id IN (
        SELECT id FROM feedback_app_assignment
        WHERE status = 'leased' AND expires_at < %(now)s
        ORDER BY id
        LIMIT %(batch)s
        FOR UPDATE SKIP LOCKED
    )
    RETURNING item_id
), per_item AS (
    SELECT item_id, count(*) AS n FROM expired GROUP BY item_id
)
UPDATE feedback_app_comparisonitem i
SET active_leases = i.active_leases - per_item.n
FROM per_item WHERE i.id = per_item.item_id
"""


@dataclass(frozen=True)
class Lease:
    assignment: Assignment
    item: ComparisonItem
    resumed: bool


def reclaim_expired_leases(*, now: datetime | None = None) -> int:
    """Expire leases past their deadline and give their slots back. Returns items touched."""
    now = now or timezone.now()
    total = 0
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(_RECLAIM_SQL, {"now": now, "batch": RECLAIM_BATCH})
            touched = cursor.rowcount
        total += touched
        if touched == 0:
            return total


def _maybe_reclaim(now: datetime) -> None:
    # At most one reclaim every few seconds across all web processes.
    try:
        if cache.add("reclaim-leases", 1, timeout=RECLAIM_EVERY_SECONDS):
            reclaim_expired_leases(now=now)
    except Exception:  # Redis down: reclaiming waits for the periodic task.
        pass


def current_lease(
    *, project: Project, labeler: AbstractBaseUser, now: datetime | None = None
) -> Assignment | None:
    now = now or timezone.now()
    return (
        Assignment.objects.filter(
            labeler=labeler, item__project=project, status=Assignment.Status.LEASED, expires_at__gt=now
        )
        .select_related("item")
        .order_by("leased_at")
        .first()
    )


def _pick_item_id(*, project: Project, labeler_id: int, gold: bool) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(_PICK_ITEM_SQL, {"project": project.pk, "gold": gold, "labeler": labeler_id})
        row = cursor.fetchone()
    return row[0] if row else None


def lease_next_item(
    *,
    project: Project,
    labeler: AbstractBaseUser,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Lease | None:
    """Give ``labeler`` their next item in ``project``, or None when nothing is left for them.

    A labeler with a live lease gets that item again (a reload never burns an item).
    """
    now = now or timezone.now()
    rng = rng or random.Random()
    _maybe_reclaim(now)
    existing = current_lease(project=project, labeler=labeler, now=now)
    if existing is not None:
        return Lease(assignment=existing, item=existing.item, resumed=True)

    want_gold = project.gold_rate > 0 and rng.random() < project.gold_rate
    for attempt in range(3):
        try:
            with transaction.atomic():
                item_id = _pick_item_id(project=project, labeler_id=labeler.pk, gold=want_gold)
                if item_id is None:
                    item_id = _pick_item_id(project=project, labeler_id=labeler.pk, gold=not want_gold)
                if item_id is None:
                    return None
                item = next(iter(ComparisonItem.objects.raw(_TAKE_SLOT_SQL, {"item": item_id})))
                response_ids = list(
                    ItemResponse.objects.filter(item_id=item_id)
                    .order_by("position")
                    .values_list("response_id", flat=True)
                )
                rng.shuffle(response_ids)
                assignment = Assignment.objects.create(
                    item=item,
                    labeler=labeler,
                    shown_order=response_ids,
                    leased_at=now,
                    expires_at=now + timedelta(seconds=project.lease_seconds),
                )
        except IntegrityError:
            # The same labeler leased concurrently in another request: use that lease.
            existing = current_lease(project=project, labeler=labeler, now=now)
            if existing is not None:
                return Lease(assignment=existing, item=existing.item, resumed=True)
            if attempt == 2:
                raise
            continue
        return Lease(assignment=assignment, item=assignment.item, resumed=False)
    return None


def skip_item(*, labeler: AbstractBaseUser, item_id: int, now: datetime | None = None) -> Assignment:
    """Give a leased item back without judging it; the labeler will not see it again."""
    now = now or timezone.now()
    with transaction.atomic():
        assignment = Assignment.objects.select_for_update().filter(item_id=item_id, labeler=labeler).first()
        if assignment is None:
            raise NotFound(f"Item {item_id} is not leased to you.")
        if assignment.status != Assignment.Status.LEASED:
            raise Conflict(f"Item {item_id} is already {assignment.status}; nothing to skip.")
        assignment.status = Assignment.Status.SKIPPED
        assignment.finished_at = now
        assignment.save(update_fields=["status", "finished_at"])
        ComparisonItem.objects.filter(pk=item_id).update(active_leases=F("active_leases") - 1)
    return assignment
