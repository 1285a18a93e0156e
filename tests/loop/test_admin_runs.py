"""The training-run pages: staff only, live fragment, curves, gate report."""

from __future__ import annotations

import pytest
from django.urls import reverse

from feedback_app.models import TrainingRun
from feedback_app.services.plots import run_charts

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(project):
    return TrainingRun.objects.create(
        project=project,
        status=TrainingRun.Status.RUNNING,
        stage="dpo",
        progress={"stage": "dpo", "step": 3, "total": 4, "loss": 0.5, "eta_s": 2.0},
        history=[
            {"stage": "reward", "step": 1, "total": 2, "loss": 0.7, "accuracy": 0.5},
            {"stage": "reward", "step": 2, "total": 2, "loss": 0.6, "accuracy": 0.75},
            {"stage": "dpo", "step": 1, "total": 4, "loss": 0.69},
        ],
        gate_report={
            "decision": "fail",
            "reasons": ["KL to reference 12 > 10"],
            "thresholds": {"max_kl": 10},
        },
        log="12:00:00 stage dpo: start\n<script>alert(1)</script>\n",
    )


def test_staff_see_the_run_page_with_progress_curves_and_gate(client, staff, run):
    client.force_login(staff)
    page = client.get(reverse("admin:feedback_app_trainingrun_change", args=[run.pk]))
    assert page.status_code == 200
    body = page.content.decode()
    assert "75%" in body and "loss 0.5000" in body
    assert body.count('class="chart"') == 2 and "Training loss by stage" in body
    assert "KL to reference 12 &gt; 10" in body
    assert "<script>alert(1)</script>" not in body  # the log is escaped
    assert 'hx-trigger="every 2s"' in body  # still running: the page polls
    fragment = client.get(reverse("admin:feedback_app_trainingrun_live", args=[run.pk]))
    assert fragment.status_code == 200 and "Status: running" in fragment.content.decode()


def test_labelers_cannot_reach_run_pages_or_launch(client, labeler, run):
    client.force_login(labeler)
    for url in (
        reverse("admin:feedback_app_trainingrun_change", args=[run.pk]),
        reverse("admin:feedback_app_trainingrun_launch"),
        reverse("admin:feedback_app_trainingrun_rollback"),
    ):
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"]


def test_charts_escape_names_and_skip_empty_history():
    assert run_charts([]) == []
    svg = run_charts([{"stage": "<b>", "step": 1, "loss": 1.0}, {"stage": "<b>", "step": 2, "loss": 0.5}])[0]
    assert "<b>" not in svg and "&lt;b&gt;" in svg
