"""Staff pages in the Django admin; labelers and anonymous users are kept out."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from feedback_app.models import ExportSnapshot, Prompt
from feedback_app.services.assignment import lease_next_item
from feedback_app.services.judgements import submit_judgement
from tests.factories import make_item

pytestmark = pytest.mark.django_db

CHANGELISTS = [
    "project", "prompt", "modelversion", "response", "comparisonitem",
    "assignment", "judgement", "demonstration", "exportsnapshot",
]  # fmt: skip


def _judged_project(project, labeler):
    item = make_item(project)
    lease = lease_next_item(project=project, labeler=labeler)
    submit_judgement(labeler=labeler, item_id=item.pk, ranking=lease.assignment.shown_order, client_key="a")
    return item


@pytest.mark.parametrize("model", CHANGELISTS)
def test_staff_see_every_changelist(client, staff, project, labeler, model):
    _judged_project(project, labeler)
    client.force_login(staff)
    response = client.get(reverse(f"admin:feedback_app_{model}_changelist"))
    assert response.status_code == 200


@pytest.mark.parametrize("page", ["import", "export", "quality"])
def test_project_tools_are_staff_only(client, staff, labeler, project, page):
    url = reverse(f"admin:feedback_app_project_{page}", args=[project.pk])
    assert client.get(url).status_code == 302  # anonymous → admin login
    client.force_login(labeler)
    response = client.get(url)
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    client.force_login(staff)
    assert client.get(url).status_code == 200


def test_admin_import_good_and_bad_files(client, staff, project):
    client.force_login(staff)
    url = reverse("admin:feedback_app_project_import", args=[project.pk])
    good = SimpleUploadedFile(
        "p.csv", b"prompt,response_1,response_2\nHi?,Hello.,Hey.\nBye?,Ciao.,See you.\n"
    )
    response = client.post(url, {"file": good, "model_version": "imported"})
    assert response.status_code == 200
    assert b"Comparison items created: 2" in response.content
    bad = SimpleUploadedFile("p.jsonl", b'{"prompt": "fine"}\n{"oops": 1}\n')
    response = client.post(url, {"file": bad, "model_version": "imported"})
    assert response.status_code == 400
    assert b"<td>2</td>" in response.content
    assert Prompt.objects.filter(project=project).count() == 2


def test_admin_export_and_quality_pages(client, staff, labeler, project):
    _judged_project(project, labeler)
    client.force_login(staff)
    response = client.post(
        reverse("admin:feedback_app_project_export", args=[project.pk]),
        {"format": "plain", "aggregation": "all", "ties": "drop", "all_bad": "drop", "min_judgements": 1},
    )
    snapshot = ExportSnapshot.objects.get(project=project)
    assert response.status_code == 302
    assert snapshot.status == ExportSnapshot.Status.COMPLETE
    page = client.get(reverse("admin:feedback_app_exportsnapshot_change", args=[snapshot.pk]))
    assert page.status_code == 200
    download = client.get(reverse("admin:feedback_app_export_download", args=[snapshot.pk]))
    assert download.status_code == 200 and b'"chosen"' in b"".join(download.streaming_content)
    quality = client.get(reverse("admin:feedback_app_project_quality", args=[project.pk]))
    assert quality.status_code == 200 and labeler.username.encode() in quality.content


def test_judgements_are_read_only_in_the_admin(client, staff, labeler, project):
    _judged_project(project, labeler)
    client.force_login(staff)
    assert client.get(reverse("admin:feedback_app_judgement_add")).status_code == 403
