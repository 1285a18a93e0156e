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

import json
import random
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

import psycopg
from django.contrib.auth.models import AbstractBaseUser
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.backends.utils import CursorDebugWrapper, CursorWrapper
from django.db.models import F
from django.utils import timezone

from feedback_app.models import Assignment, ComparisonItem, Project
from feedback_app.services.errors import Conflict, NotFound

RECLAIM_EVERY_SECONDS = 5
RECLAIM_BATCH = 1000

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


_last_reclaim_check = 0.0


def _maybe_reclaim(now: datetime) -> None:
    # At most one reclaim every few seconds across all web processes: each process asks
    # Redis at most that often, and the first to add the key does the work.
    global _last_reclaim_check
    tick = time.monotonic()
    if tick - _last_reclaim_check < RECLAIM_EVERY_SECONDS:
        return
    _last_reclaim_check = tick
    try:
        if cache.add("reclaim-leases", 1, timeout=RECLAIM_EVERY_SECONDS):
            reclaim_expired_leases(now=now)
    except Exception:  # Redis down: reclaiming waits for the periodic task.
        pass


# One round trip: the PL/pgSQL function of migration 0004 (pick, lock, count, lease, payload).
_LEASE_NEXT_SQL = "SELECT feedback_lease_next(%s, %s, %s, %s, %s)"
# Random keys that shuffle an item's responses (one per position); items have far fewer.
ORDER_KEYS = 32


@dataclass(frozen=True)
class Lease:
    """A leased item, read from the JSON of ``feedback_lease_next``.

    ``payload`` is what the labeler is shown; ``assignment`` and ``item`` are model
    instances built on first use (no query; the API's vote path never needs them).
    """

    row: dict[str, Any]

    @property
    def resumed(self) -> bool:
        return self.row["outcome"] == "resumed"

    @cached_property
    def item(self) -> ComparisonItem:
        i = self.row["item"]
        item = ComparisonItem(
            id=i["id"],
            project_id=i["project_id"],
            prompt_id=i["prompt_id"],
            is_gold=i["is_gold"],
            gold_ranking=i["gold_ranking"],
            judgements_wanted=i["judgements_wanted"],
            judgement_count=i["judgement_count"],
            active_leases=i["active_leases"],
            status=i["status"],
            created_at=datetime.fromisoformat(i["created_at"]),
        )
        mark_loaded(item)
        return item

    @cached_property
    def assignment(self) -> Assignment:
        a = self.row["assignment"]
        assignment = Assignment(
            id=a["id"],
            item=self.item,
            status=Assignment.Status.LEASED,
            shown_order=a["shown_order"],
            leased_at=datetime.fromisoformat(a["leased_at"]),
            expires_at=datetime.fromisoformat(a["expires_at"]),
        )
        mark_loaded(assignment)
        return assignment

    @cached_property
    def payload(self) -> dict[str, Any]:
        a, i = self.row["assignment"], self.row["item"]
        return {
            "assignment_id": a["id"],
            "item_id": i["id"],
            "project_id": i["project_id"],
            "expires_at": datetime.fromisoformat(a["expires_at"]),
            "messages": self.row["messages"],
            "responses": self.row["responses"],
        }


def lease_request(rng: random.Random | None = None) -> dict[str, Any]:
    """The random part of a lease: the draw for a gold item and the keys that shuffle responses."""
    rng = rng or random.Random()
    return {"gold_draw": rng.random(), "order_keys": [rng.random() for _ in range(ORDER_KEYS)]}


def mark_loaded(*instances: Any) -> None:
    """Model instances built from a row a function returned behave as if loaded by the ORM."""
    for instance in instances:
        instance._state.adding = False
        instance._state.db = connection.alias


def lease_from_row(row: dict[str, Any]) -> Lease | None:
    """The lease in ``feedback_lease_next``'s JSON (no query).

    None when nothing is left for the labeler; NotFound for a missing or inactive project.
    """
    if row["outcome"] == "no_project":
        raise NotFound("No such active project.")
    if row["outcome"] == "empty":
        return None
    return Lease(row)


def call_json_function(sql: str, params: list[Any]) -> Any:
    """Run one statement that returns a single jsonb value, decoded (None for SQL NULL).

    The statement is sent with server-side parameter binding, so psycopg prepares it after
    a few calls on a connection and PostgreSQL stops parsing and planning it (Django's own
    cursors bind parameters client-side). Inside a transaction it runs in a savepoint, so
    that a failed statement (an IntegrityError) leaves the transaction usable.
    """
    # Django's cursor connects (and health-checks a reused connection) first.
    with transaction.atomic() if connection.in_atomic_block else nullcontext(), connection.cursor() as django:
        wrapper = CursorDebugWrapper if connection.queries_logged else CursorWrapper
        with wrapper(psycopg.Cursor(django.cursor.connection), connection) as cursor:
            cursor.execute(sql, params)
            value = cursor.fetchone()[0]
    # Django reads jsonb as text and leaves the decoding to the caller.
    return json.loads(value) if isinstance(value, str) else value


def lease_next_item(
    *,
    project: Project | int,
    labeler: AbstractBaseUser,
    now: datetime | None = None,
    rng: random.Random | None = None,
) -> Lease | None:
    """Give ``labeler`` their next item in ``project`` (a Project or its id), or None when
    nothing is left for them; NotFound when the project is missing or inactive.

    A labeler with a live lease gets that item again (a reload never burns an item).
    """
    now = now or timezone.now()
    _maybe_reclaim(now)
    request = lease_request(rng)
    project_id = project.pk if isinstance(project, Project) else project
    params = [project_id, labeler.pk, request["gold_draw"], now, request["order_keys"]]
    for attempt in range(3):
        try:
            return lease_from_row(call_json_function(_LEASE_NEXT_SQL, params))
        except IntegrityError:
            # The same labeler leased concurrently in another request: try again (it resumes).
            if attempt == 2:
                raise
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
