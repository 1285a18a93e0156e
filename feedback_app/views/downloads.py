"""Streaming download of an export snapshot's preference file (API and admin)."""

from __future__ import annotations

from django.http import StreamingHttpResponse

from feedback_app.models import ExportSnapshot
from feedback_app.services import exports


def download_response(snapshot: ExportSnapshot) -> StreamingHttpResponse:
    response = StreamingHttpResponse(exports.iter_export_lines(snapshot), content_type="application/jsonl")
    response["Content-Disposition"] = (
        f'attachment; filename="project{snapshot.project_id}-v{snapshot.version}-preferences.jsonl"'
    )
    response["X-Content-Hash"] = snapshot.content_hash
    return response
