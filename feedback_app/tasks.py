"""Celery tasks: thin wrappers that call services or trainer/.

The pipeline is a chain of one task per stage. Training stages go to the
``training`` queue (route it to a GPU host); the others to ``web``. Tasks are
acknowledged late, so a stage that dies with its worker is delivered again, and
every stage is idempotent.
"""

from __future__ import annotations

import logging

import redis
from celery import chain, shared_task
from django.db import InterfaceError, OperationalError

from feedback_app.services import assignment, pipeline
from feedback_app.services.errors import ServiceError

logger = logging.getLogger(__name__)
TRANSIENT_ERRORS = (OperationalError, InterfaceError, redis.ConnectionError, ConnectionError, TimeoutError)
STAGE_RETRIES = 3


class BrokerUnavailable(ServiceError):
    status_code = 503
    code = "broker_unavailable"


@shared_task(name="feedback_app.reclaim_expired_leases", ignore_result=True)
def reclaim_expired_leases() -> int:
    """Give the slots of expired leases back to the queue."""
    return assignment.reclaim_expired_leases()


def _run_stage(task, run_id: int, stage: str) -> str:
    try:
        return pipeline.run_stage(run_id, stage)
    except TRANSIENT_ERRORS as exc:
        if task.request.retries >= STAGE_RETRIES:
            pipeline.fail(run_id, f"{stage}: gave up after {STAGE_RETRIES} retries: {exc}")
            raise
        logger.warning("run %s stage %s: transient error, retrying: %s", run_id, stage, exc)
        raise task.retry(exc=exc, countdown=2 ** (task.request.retries + 1)) from exc
    except Exception as exc:
        pipeline.fail(run_id, f"{stage}: {exc}")
        raise


@shared_task(bind=True, name="feedback_app.pipeline_web_stage", acks_late=True)
def pipeline_web_stage(self, run_id: int, stage: str) -> str:
    return _run_stage(self, run_id, stage)


@shared_task(bind=True, name="feedback_app.pipeline_training_stage", acks_late=True)
def pipeline_training_stage(self, run_id: int, stage: str) -> str:
    return _run_stage(self, run_id, stage)


def start_pipeline(run_id: int):
    """Enqueue the chain of stages for a launched run."""
    steps = [
        (pipeline_training_stage if stage in pipeline.TRAINING_STAGES else pipeline_web_stage).si(
            run_id, stage
        )
        for stage in pipeline.STAGES
    ]
    try:
        result = chain(*steps).apply_async()
    except Exception as exc:  # the broker is down: say so on the run instead of failing the request
        message = f"could not queue the pipeline, the task broker is unavailable: {exc}"
        pipeline.fail(run_id, message)
        raise BrokerUnavailable(message) from exc
    pipeline.TrainingRun.objects.filter(pk=run_id).update(celery_task_id=result.id or "")
    return result


@shared_task(name="feedback_app.launch_due_runs")
def launch_due_runs() -> list[int]:
    """The schedule: launch a run for each project with enough new judgements (one at a time)."""
    from feedback_app.services.errors import Conflict

    launched = []
    for project in pipeline.due_projects():
        try:
            run = pipeline.launch_run(project=project, options=project.loop_options, trigger="schedule")
        except Conflict:
            break  # one pipeline at a time; the next tick tries again
        start_pipeline(run.pk)
        launched.append(run.pk)
    return launched


@shared_task(name="feedback_app.fail_stale_runs")
def fail_stale_runs() -> list[int]:
    return pipeline.fail_stale_runs()


@shared_task(
    name="feedback_app.generate_items_after_promotion",
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=True,
    max_retries=5,
)
def generate_items_after_promotion(version_id: int) -> int:
    """Keep the queue full: new comparison items of the new version against the previous one."""
    return pipeline.refill_queue(version_id)


def enqueue_refill(version_id: int) -> bool:
    """Queue the refill after a promotion; a broker outage is logged, never raised at the caller."""
    try:
        generate_items_after_promotion.delay(version_id)
    except Exception:
        logger.exception("could not queue comparison items for version %s (broker down?)", version_id)
        return False
    return True


@shared_task(name="feedback_app.restore_adapters", ignore_result=True)
def restore_adapters() -> list[str]:
    """Reload the serving version and its rollback target on replicas that restarted."""
    from feedback_app.services import registry
    from trainer.generation.base import GenerationError

    try:
        return registry.restore_adapters()
    except (ServiceError, GenerationError) as exc:  # a replica is down: the next tick tries again
        logger.warning("could not restore adapters: %s", exc)
        return []
