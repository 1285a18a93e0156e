"""Read-side queries for the labeler UI: progress counts and what an item shows.

Everything here is scoped to one labeler: a labeler only ever sees their own
queue, never another labeler's judgements, and never which model wrote a response.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Count, Exists, F, OuterRef
from django.utils import timezone

from feedback_app.models import Assignment, ComparisonItem, Judgement, Project, Response


@dataclass(frozen=True)
class Progress:
    done_today: int
    left: int


@dataclass(frozen=True)
class ShownResponse:
    """A response as a labeler sees it: its display number and text, nothing else."""

    number: int  # 1-based display position
    text: str


def start_of_today_utc(now: datetime | None = None) -> datetime:
    now = (now or timezone.now()).astimezone(UTC)
    return datetime.combine(now.date(), time.min, tzinfo=UTC)


def _open_items_left_for(labeler: AbstractBaseUser):
    """Open non-gold items with room that ``labeler`` was never assigned."""
    already_assigned = Assignment.objects.filter(item=OuterRef("pk"), labeler=labeler)
    return ComparisonItem.objects.filter(
        status=ComparisonItem.Status.OPEN,
        is_gold=False,
        judgement_count__lt=F("judgements_wanted") - F("active_leases"),
    ).filter(~Exists(already_assigned))


def _done_today_for(labeler: AbstractBaseUser, now: datetime | None = None):
    # Corrections (judgements that supersede another) are not new work.
    return Judgement.objects.filter(
        labeler=labeler, created_at__gte=start_of_today_utc(now), supersedes__isnull=True
    )


def progress_for(*, project: Project, labeler: AbstractBaseUser, now: datetime | None = None) -> Progress:
    return Progress(
        done_today=_done_today_for(labeler, now).filter(item__project=project).count(),
        left=_open_items_left_for(labeler).filter(project=project).count(),
    )


def progress_by_project(
    *, projects: Iterable[Project], labeler: AbstractBaseUser, now: datetime | None = None
) -> dict[int, Progress]:
    """Progress for many projects in two grouped queries."""
    ids = [p.pk for p in projects]
    done = dict(
        _done_today_for(labeler, now)
        .filter(item__project_id__in=ids)
        .values_list("item__project_id")
        .annotate(n=Count("id"))
        .values_list("item__project_id", "n")
    )
    left = dict(
        _open_items_left_for(labeler)
        .filter(project_id__in=ids)
        .values_list("project_id")
        .annotate(n=Count("id"))
        .values_list("project_id", "n")
    )
    return {pid: Progress(done_today=done.get(pid, 0), left=left.get(pid, 0)) for pid in ids}


def active_projects():
    return Project.objects.filter(is_active=True).order_by("name")


def shown_responses(assignment: Assignment) -> list[ShownResponse]:
    """The item's responses in the order recorded on the labeler's assignment.

    Only the text is loaded: the model version is never read for the labeler UI.
    """
    order = [int(rid) for rid in assignment.shown_order]
    texts = dict(Response.objects.filter(pk__in=order).values_list("pk", "text"))
    return [ShownResponse(number=i + 1, text=texts.get(rid, "")) for i, rid in enumerate(order)]


def conversation(item: ComparisonItem) -> list[dict[str, str]]:
    """The prompt's messages as role/content pairs (one for a single-turn prompt)."""
    messages = item.prompt.messages if isinstance(item.prompt.messages, list) else []
    result = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        role = str(message.get("role") or "user")
        result.append({"role": role, "content": str(message.get("content") or "")})
    return result


def own_assignment(*, project: Project, labeler: AbstractBaseUser, item_id: int) -> Assignment | None:
    """``labeler``'s own assignment on ``item_id`` in ``project`` (never anyone else's)."""
    return (
        Assignment.objects.filter(item_id=item_id, labeler=labeler, item__project=project)
        .only("id", "item_id", "labeler_id", "status", "shown_order", "expires_at")
        .first()
    )
