"""Default periodic tasks, stored with django-celery-beat so staff can edit them in the admin."""

from __future__ import annotations

from django_celery_beat.models import IntervalSchedule, PeriodicTask


def ensure_default_schedules() -> None:
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.get_or_create(
        name="Reclaim expired leases",
        defaults={"task": "feedback_app.reclaim_expired_leases", "interval": every_minute, "queue": "web"},
    )
