"""Default periodic tasks, stored with django-celery-beat so staff can edit them in the admin."""

from __future__ import annotations

from django.conf import settings
from django_celery_beat.models import IntervalSchedule, PeriodicTask


def _every(seconds: int) -> IntervalSchedule:
    schedule, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    return schedule


def ensure_default_schedules() -> None:
    """Create the default schedules once; edits made in the admin are kept."""
    defaults = [
        ("Reclaim expired leases", "feedback_app.reclaim_expired_leases", 60),
        ("Fail training runs whose worker died", "feedback_app.fail_stale_runs", 60),
        ("Reload adapters on restarted vLLM replicas", "feedback_app.restore_adapters", 60),
        (
            "Retrain when enough new judgements arrived",
            "feedback_app.launch_due_runs",
            60 * settings.LOOP["SCHEDULE_MINUTES"],
        ),
    ]
    for name, task, seconds in defaults:
        PeriodicTask.objects.get_or_create(
            name=name, defaults={"task": task, "interval": _every(seconds), "queue": "web"}
        )
