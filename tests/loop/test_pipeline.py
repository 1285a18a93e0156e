"""The closed loop: the whole chain through a real Celery worker, and its failure cases."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django_celery_results.models import TaskResult
from rest_framework.authtoken.models import Token

from feedback_app.models import AuditEvent, Judgement, ModelVersion, TrainingRun
from feedback_app.services import pipeline, registry
from feedback_app.services.errors import Conflict, InvalidInput
from feedback_app.tasks import BrokerUnavailable, start_pipeline
from tests.factories import StaffFactory, make_item
from tests.loop.conftest import FAST_OPTIONS, use_broker, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def _base_serving(tiny_base: str) -> ModelVersion:
    version = registry.register_version("base", base_model=tiny_base, origin="tests")
    ModelVersion.objects.filter(pk=version.pk).update(status=ModelVersion.Status.SERVING)
    return ModelVersion.objects.get(pk=version.pk)


def _finished(run_id: int) -> TrainingRun | None:
    run = TrainingRun.objects.get(pk=run_id)
    return run if run.is_finished else None


@pytest.mark.celery
def test_whole_chain_through_a_real_worker_promotes_the_candidate(judged_project, tiny_base, start_worker):
    base = _base_serving(tiny_base)
    staff = StaffFactory()
    start_worker()
    run = pipeline.launch_run(project=judged_project, options=FAST_OPTIONS, user=staff)
    start_pipeline(run.pk)

    run = wait_for(lambda: _finished(run.pk), timeout=420, interval=1, message="the run to finish")

    assert run.status == TrainingRun.Status.PROMOTED, (run.error, run.log)
    candidate = run.candidate
    assert candidate.status == ModelVersion.Status.SERVING
    assert candidate.parent_id == base.pk
    assert registry.serving_version() == candidate
    # Lineage: the export snapshot, the judgements in it, the config and the metrics.
    assert run.export.judgement_ids == sorted(Judgement.objects.values_list("pk", flat=True))
    assert run.export.content_hash in str(candidate.metrics)
    shipped = json.loads((Path(candidate.adapter_path) / "lineage.json").read_text())
    assert shipped["export"]["content_hash"] == run.export.content_hash
    assert shipped["export"]["judgement_ids"] == run.export.judgement_ids
    assert shipped["parent"] == "base" and shipped["options"]["max_steps"] == 3
    assert {"export", "reward", "policy"} <= set(run.metrics)
    assert run.gate_report["decision"] == "pass"
    assert run.history and any("loss" in point for point in run.history)
    assert "stage promote" in run.log
    # Task results are recorded (the admin shows them) for every stage.
    assert TaskResult.objects.filter(status="SUCCESS").count() >= len(pipeline.STAGES)
    assert AuditEvent.objects.filter(action="launch", actor=staff).exists()
    assert AuditEvent.objects.filter(action="promote").exists()
    assert not TrainingRun.objects.filter(running=True).exists()


@pytest.mark.celery
def test_worker_killed_during_training_fails_the_run_and_a_later_run_recovers(
    judged_project, tiny_base, start_worker
):
    base = _base_serving(tiny_base)
    worker = start_worker()
    run = pipeline.launch_run(project=judged_project, options={**FAST_OPTIONS, "max_steps": 200})
    start_pipeline(run.pk)
    wait_for(
        lambda: TrainingRun.objects.get(pk=run.pk).stage in {"reward", "policy"},
        timeout=300,
        message="a training stage to start",
    )
    worker.kill()
    time.sleep(pipeline.HEARTBEAT_SECONDS + 2)

    assert pipeline.fail_stale_runs(stale_after=timedelta(seconds=pipeline.HEARTBEAT_SECONDS + 1)) == [run.pk]
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and not run.running
    assert "stopped responding" in run.error
    assert registry.serving_version() == base
    assert Judgement.objects.count() == 16  # nothing lost

    start_worker()
    again = pipeline.launch_run(project=judged_project, options=FAST_OPTIONS)
    start_pipeline(again.pk)
    again = wait_for(lambda: _finished(again.pk), timeout=420, interval=1, message="the second run")
    assert again.status == TrainingRun.Status.PROMOTED, (again.error, again.log)


def test_vllm_down_at_promotion_keeps_the_candidate_and_the_serving_version(
    judged_project, tiny_base, settings
):
    base = _base_serving(tiny_base)
    settings.GENERATION = {**settings.GENERATION, "BACKEND": "vllm", "VLLM_URLS": ["http://127.0.0.1:9"]}
    from feedback_app.services import generation

    generation._backend_key = None
    run = pipeline.launch_run(project=judged_project, options=FAST_OPTIONS)
    for stage in pipeline.STAGES:
        pipeline.run_stage(run.pk, stage)
    run.refresh_from_db()

    assert run.status == TrainingRun.Status.CANDIDATE
    assert run.candidate.status == ModelVersion.Status.CANDIDATE
    assert registry.serving_version() == base
    assert "promotion failed" in run.log
    assert Judgement.objects.count() == 16


def test_broker_down_the_web_app_still_accepts_judgements(
    judged_project, loop_settings, client, api_client, celery_broker
):
    from tests.factories import UserFactory

    use_broker("redis://127.0.0.1:1/0")  # nothing listens there
    make_item(judged_project)
    labeler = UserFactory()
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=labeler).key}")
    item = api_client.post(f"/api/v1/projects/{judged_project.pk}/next/").json()["item"]
    ids = [r["id"] for r in item["responses"]]
    response = api_client.post(
        f"/api/v1/projects/{judged_project.pk}/judgements/",
        {"item": item["item_id"], "ranking": ids, "client_key": "broker-down"},
        format="json",
    )
    assert response.status_code == 201
    # Launching a run says clearly that the broker is down, and records it on the run.
    run = pipeline.launch_run(project=judged_project, options=FAST_OPTIONS)
    with pytest.raises(BrokerUnavailable):
        start_pipeline(run.pk)
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "broker" in run.error
    staff = StaffFactory()
    client.force_login(staff)
    page = client.post(
        "/admin/feedback_app/trainingrun/launch/",
        {
            "project": judged_project.pk,
            "algorithm": "dpo",
            "loss_type": "sigmoid",
            "epochs": 1,
            "beta": 0.1,
            "learning_rate": 0.001,
            "reward_epochs": 1,
            "min_win_rate": 0.5,
            "min_pair_accuracy": 0.5,
            "max_kl": 10,
            "auto_promote": "on",
        },
        follow=True,
    )
    assert page.status_code == 200
    assert b"broker is unavailable" in page.content


def test_one_pipeline_at_a_time(judged_project, loop_settings):
    first = pipeline.launch_run(project=judged_project, options=FAST_OPTIONS)
    assert pipeline.acquire(first)
    with pytest.raises(Conflict):
        pipeline.launch_run(project=judged_project, options=FAST_OPTIONS)
    second = TrainingRun.objects.create(project=judged_project, options=FAST_OPTIONS)
    assert not pipeline.acquire(second)
    assert pipeline.run_stage(second.pk, "export") == "failed: locked"


def test_bad_training_options_are_refused(judged_project, loop_settings):
    with pytest.raises(InvalidInput, match="algorithm"):
        pipeline.launch_run(project=judged_project, options={"algorithm": "ppo2"})
    with pytest.raises(InvalidInput, match="Unknown"):
        pipeline.launch_run(project=judged_project, options={"temperature": 3})
