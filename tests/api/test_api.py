"""The REST API: token auth, the labeling flow, staff-only endpoints, clear 4xx answers."""

from __future__ import annotations

import io
import json

import pytest
from rest_framework.authtoken.models import Token

from feedback_app.models import Judgement
from tests.factories import ProjectFactory, make_item

pytestmark = pytest.mark.django_db


def _auth(client, user):
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


def _next(client, project):
    response = client.post(f"/api/v1/projects/{project.pk}/next/")
    assert response.status_code == 200, response.content
    return response.json()["item"]


def test_anonymous_requests_get_401(api_client, project):
    assert api_client.get("/api/v1/projects/").status_code == 401
    assert api_client.post(f"/api/v1/projects/{project.pk}/next/").status_code == 401
    assert api_client.get("/api/schema/").status_code in {401, 403}


def test_token_is_issued_for_valid_credentials(api_client, labeler):
    response = api_client.post(
        "/api/v1/auth/token/", {"username": labeler.username, "password": "pw-for-tests"}
    )
    assert response.status_code == 200
    assert response.json()["token"] == Token.objects.get(user=labeler).key
    bad = api_client.post("/api/v1/auth/token/", {"username": labeler.username, "password": "wrong"})
    assert bad.status_code == 400


def test_label_flow_next_submit_with_next_and_replay(api_client, labeler, project):
    items = [make_item(project), make_item(project)]
    client = _auth(api_client, labeler)
    item = _next(client, project)
    assert item["item_id"] in {i.pk for i in items}
    assert [r["id"] for r in item["responses"]] and "model" not in json.dumps(item["responses"])
    ids = [r["id"] for r in item["responses"]]
    body = {
        "item": item["item_id"],
        "ranking": [[ids[1]], [ids[0]]],
        "client_key": "c1",
        "time_spent_ms": 900,
        "next": True,
    }
    first = client.post(f"/api/v1/projects/{project.pk}/judgements/", body, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["judgement"]["ranking"] == [[ids[1]], [ids[0]]]
    assert first.json()["judgement"]["shown_order"] == ids
    following = first.json()["next"]["item"]
    assert following["item_id"] != item["item_id"]
    replay = client.post(f"/api/v1/projects/{project.pk}/judgements/", body, format="json")
    assert replay.status_code == 200
    assert replay.json()["judgement"]["id"] == first.json()["judgement"]["id"]
    assert Judgement.objects.count() == 1


def test_queue_empty_is_a_clear_message(api_client, labeler, project):
    item = _next(_auth(api_client, labeler), project)
    assert item is None
    response = api_client.post(f"/api/v1/projects/{project.pk}/next/")
    assert "Nothing left" in response.json()["detail"]


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"ranking": "first"}, 400, "ranking"),
        ({"ranking": [[1, 2]]}, 400, "not part of this item"),
        ({"client_key": ""}, 400, "client_key"),
        ({"rationale": "x" * 6000}, 400, "rationale"),
        ({"time_spent_ms": -5}, 400, "time_spent_ms"),
        ({"item": "abc"}, 400, "item"),
    ],
)
def test_bad_submissions_get_a_clear_4xx(api_client, labeler, project, change, status, needle):
    make_item(project)
    client = _auth(api_client, labeler)
    item = _next(client, project)
    ids = [r["id"] for r in item["responses"]]
    body = {"item": item["item_id"], "ranking": ids, "client_key": "k", **change}
    response = client.post(f"/api/v1/projects/{project.pk}/judgements/", body, format="json")
    assert response.status_code == status
    assert needle in json.dumps(response.json())
    assert not Judgement.objects.exists()


def test_unknown_item_and_item_of_another_project(api_client, labeler, project):
    other = make_item(ProjectFactory())
    client = _auth(api_client, labeler)
    for item_id, status, needle in ((10**9, 404, "does not exist"), (other.pk, 400, "not part of project")):
        response = client.post(
            f"/api/v1/projects/{project.pk}/judgements/",
            {"item": item_id, "ranking": [1, 2], "client_key": f"k{item_id}"},
            format="json",
        )
        assert response.status_code == status
        assert needle in response.json()["detail"]


def test_item_not_leased_to_you_is_409(api_client, labeler, other_labeler, project):
    make_item(project)
    item = _next(_auth(api_client, labeler), project)
    ids = [r["id"] for r in item["responses"]]
    client = _auth(api_client, other_labeler)
    response = client.post(
        f"/api/v1/projects/{project.pk}/judgements/",
        {"item": item["item_id"], "ranking": ids, "client_key": "k"},
        format="json",
    )
    assert response.status_code == 409
    assert "not leased to you" in response.json()["detail"]


def test_non_json_body_is_400_not_500(api_client, labeler, project):
    client = _auth(api_client, labeler)
    response = client.post(
        f"/api/v1/projects/{project.pk}/judgements/", "{not json", content_type="application/json"
    )
    assert response.status_code == 400


def test_skip_then_correct_flow(api_client, labeler, project):
    make_item(project)
    make_item(project)
    client = _auth(api_client, labeler)
    item = _next(client, project)
    assert client.post(f"/api/v1/items/{item['item_id']}/skip/").status_code == 204
    assert client.post(f"/api/v1/items/{item['item_id']}/skip/").status_code == 409
    item = _next(client, project)
    ids = [r["id"] for r in item["responses"]]
    made = client.post(
        f"/api/v1/projects/{project.pk}/judgements/",
        {"item": item["item_id"], "ranking": ids, "client_key": "a"},
        format="json",
    ).json()["judgement"]
    fixed = client.post(
        f"/api/v1/judgements/{made['id']}/correct/",
        {"ranking": [ids[::-1]], "client_key": "b"},
        format="json",
    )
    assert fixed.status_code == 201
    assert fixed.json()["supersedes"] == made["id"]


def test_labelers_only_see_their_own_judgements(api_client, labeler, other_labeler, staff, project):
    make_item(project)
    client = _auth(api_client, labeler)
    item = _next(client, project)
    ids = [r["id"] for r in item["responses"]]
    client.post(
        f"/api/v1/projects/{project.pk}/judgements/",
        {"item": item["item_id"], "ranking": ids, "client_key": "a"},
        format="json",
    )
    assert client.get("/api/v1/judgements/").json()["count"] == 1
    outsider = _auth(api_client, other_labeler)
    assert outsider.get("/api/v1/judgements/").json()["count"] == 0
    assert outsider.get(f"/api/v1/judgements/?labeler={labeler.pk}").json()["count"] == 0
    admin = _auth(api_client, staff)
    assert admin.get(f"/api/v1/judgements/?labeler={labeler.pk}").json()["count"] == 1
    assert admin.get("/api/v1/judgements/?labeler=abc").status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("post", "/api/v1/projects/{p}/import/"),
        ("get", "/api/v1/projects/{p}/exports/"),
        ("post", "/api/v1/projects/{p}/exports/"),
        ("get", "/api/v1/projects/{p}/quality/"),
    ],
)
def test_staff_only_endpoints_refuse_labelers(api_client, labeler, project, method, path):
    client = _auth(api_client, labeler)
    response = getattr(client, method)(path.format(p=project.pk))
    assert response.status_code == 403


def test_staff_import_then_export_then_download(api_client, staff, project):
    client = _auth(api_client, staff)
    lines = [
        json.dumps({"prompt": f"Question {n}?", "responses": [f"Yes {n}.", f"No {n}."]}) for n in range(3)
    ]
    upload = io.BytesIO("\n".join(lines).encode())
    upload.name = "prompts.jsonl"
    imported = client.post(f"/api/v1/projects/{project.pk}/import/", {"file": upload}, format="multipart")
    assert imported.status_code == 201, imported.content
    assert imported.json()["items_created"] == 3

    bad = io.BytesIO(b'{"prompt": "ok"}\n{"prompt": ""}\n')
    bad.name = "bad.jsonl"
    rejected = client.post(f"/api/v1/projects/{project.pk}/import/", {"file": bad}, format="multipart")
    assert rejected.status_code == 400
    assert rejected.json()["errors"][0]["row"] == 2

    item = _next(client, project)
    ids = [r["id"] for r in item["responses"]]
    client.post(
        f"/api/v1/projects/{project.pk}/judgements/",
        {"item": item["item_id"], "ranking": ids, "client_key": "a"},
        format="json",
    )
    export = client.post(
        f"/api/v1/projects/{project.pk}/exports/", {"format": "conversational"}, format="json"
    )
    assert export.status_code == 201, export.content
    snapshot = export.json()
    assert snapshot["status"] == "complete" and snapshot["content_hash"].startswith("sha256:")
    detail = client.get(f"/api/v1/exports/{snapshot['id']}/").json()
    assert len(detail["judgement_ids"]) == 1
    download = client.get(f"/api/v1/exports/{snapshot['id']}/download/")
    assert download.status_code == 200
    rows = [json.loads(line) for line in b"".join(download.streaming_content).splitlines()]
    assert len(rows) == 1
    assert rows[0]["chosen"][0]["role"] == "assistant"
    unknown = client.post(f"/api/v1/projects/{project.pk}/exports/", {"flavour": "x"}, format="json")
    assert unknown.status_code == 400


def test_rate_limit_answers_429_with_retry_after(api_client, labeler, project, settings):
    settings.FEEDBACK = {**settings.FEEDBACK, "VOTE_RATE": 1, "VOTE_RATE_WINDOW": 60}
    make_item(project)
    make_item(project)
    client = _auth(api_client, labeler)
    item = _next(client, project)
    ids = [r["id"] for r in item["responses"]]
    ok = client.post(
        f"/api/v1/projects/{project.pk}/judgements/",
        {"item": item["item_id"], "ranking": ids, "client_key": "a", "next": True},
        format="json",
    )
    assert ok.status_code == 201
    item = ok.json()["next"]["item"]
    ids = [r["id"] for r in item["responses"]]
    limited = client.post(
        f"/api/v1/projects/{project.pk}/judgements/",
        {"item": item["item_id"], "ranking": ids, "client_key": "b"},
        format="json",
    )
    assert limited.status_code == 429
    assert int(limited["Retry-After"]) >= 1
    assert "Too many" in limited.json()["detail"]


def test_openapi_schema_and_docs_for_logged_in_users(client, labeler):
    client.force_login(labeler)
    schema = client.get("/api/schema/?format=json")
    assert schema.status_code == 200
    paths = json.loads(schema.content)["paths"]
    assert "/api/v1/projects/{project_id}/judgements/" in paths
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_progress_counts_done_today_and_left(api_client, labeler, project):
    make_item(project)
    make_item(project)
    client = _auth(api_client, labeler)
    assert client.get(f"/api/v1/projects/{project.pk}/progress/").json() == {"done_today": 0, "left": 2}
    item = _next(client, project)
    ids = [r["id"] for r in item["responses"]]
    client.post(
        f"/api/v1/projects/{project.pk}/judgements/",
        {"item": item["item_id"], "ranking": ids, "client_key": "a"},
        format="json",
    )
    assert client.get(f"/api/v1/projects/{project.pk}/progress/").json() == {"done_today": 1, "left": 1}


def test_a_deactivated_user_or_deleted_token_stops_working_at_once(api_client, labeler, project):
    client = _auth(api_client, labeler)
    assert client.get("/api/v1/projects/").status_code == 200  # now cached
    labeler.is_active = False
    labeler.save()
    assert client.get("/api/v1/projects/").status_code == 401
    labeler.is_active = True
    labeler.save()
    assert client.get("/api/v1/projects/").status_code == 200
    Token.objects.filter(user=labeler).delete()
    assert client.get("/api/v1/projects/").status_code == 401
