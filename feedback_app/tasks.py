"""Celery tasks: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task

from feedback_app.services import assignment


@shared_task(name="feedback_app.reclaim_expired_leases", queue="web", ignore_result=True)
def reclaim_expired_leases() -> int:
    """Give the slots of expired leases back to the queue."""
    return assignment.reclaim_expired_leases()
