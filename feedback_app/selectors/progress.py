"""How far a labeler is in a project: done today and items left for them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

from django.contrib.auth.models import AbstractBaseUser
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from feedback_app.models import Assignment, ComparisonItem, Judgement, Project


@dataclass(frozen=True)
class Progress:
    done_today: int
    done_total: int
    left: int

    def as_dict(self) -> dict[str, int]:
        return {"done_today": self.done_today, "done_total": self.done_total, "left": self.left}


def start_of_today(now: datetime | None = None) -> datetime:
    now = now or timezone.now()
    return datetime.combine(now.date(), time.min, tzinfo=now.tzinfo)


def items_left_for(project: Project, labeler: AbstractBaseUser) -> int:
    seen = Assignment.objects.filter(item=OuterRef("pk"), labeler=labeler)
    return (
        ComparisonItem.objects.filter(
            project=project,
            status=ComparisonItem.Status.OPEN,
            is_gold=False,
            judgement_count__lt=F("judgements_wanted") - F("active_leases"),
        )
        .exclude(Exists(seen))
        .count()
    )


def labeler_progress(project: Project, labeler: AbstractBaseUser, now: datetime | None = None) -> Progress:
    mine = Judgement.objects.filter(item__project=project, labeler=labeler, supersedes__isnull=True)
    return Progress(
        done_today=mine.filter(created_at__gte=start_of_today(now)).count(),
        done_total=mine.count(),
        left=items_left_for(project, labeler),
    )
