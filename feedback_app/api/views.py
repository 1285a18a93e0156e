"""Thin REST views: parse input, call one service, shape the output."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import generics, status
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback_app.api import serializers as s
from feedback_app.api.permissions import IsStaff
from feedback_app.models import ExportSnapshot, Judgement, Project
from feedback_app.selectors.labeling import progress_for
from feedback_app.services import exports, imports, quality
from feedback_app.services.assignment import Lease, lease_next_item, skip_item
from feedback_app.services.errors import InvalidInput
from feedback_app.services.judgements import correct_judgement, submit_judgement
from feedback_app.views.downloads import download_response

QUEUE_EMPTY = "Nothing left for you in this project right now. Thank you!"


def _active_project(project_id: int) -> Project:
    return get_object_or_404(Project, pk=project_id, is_active=True)


def _next_item_body(lease: Lease | None) -> dict:
    """The ``NextItemSerializer`` shape, built directly (it is on the vote path)."""
    if lease is None:
        return {"item": None, "detail": QUEUE_EMPTY}
    return {"item": s.leased_item_data(lease.payload)}


class VisibleProjects:
    """Staff see every project; labelers the active ones."""

    def get_queryset(self):
        projects = Project.objects.all()
        if not self.request.user.is_staff:
            projects = projects.filter(is_active=True)
        return projects


class ProjectList(VisibleProjects, generics.ListAPIView):
    serializer_class = s.ProjectSerializer


class ProjectDetail(VisibleProjects, generics.RetrieveAPIView):
    serializer_class = s.ProjectSerializer


class NextItem(APIView):
    """Lease your next item (or get back the one you hold)."""

    @extend_schema(request=None, responses=s.NextItemSerializer)
    def post(self, request: Request, project_id: int) -> Response:
        return Response(_next_item_body(lease_next_item(project=project_id, labeler=request.user)))


class Progress(APIView):
    @extend_schema(responses=s.ProgressSerializer)
    def get(self, request: Request, project_id: int) -> Response:
        project = _active_project(project_id)
        progress = progress_for(project=project, labeler=request.user)
        return Response(s.ProgressSerializer(progress).data)


class SubmitJudgement(APIView):
    """Record a ranking of an item leased to you; with `next: true`, also lease the next one.

    The hottest path of the app: one round trip to PostgreSQL, and the body is read and
    answered without DRF's per-call serializer construction (the serializers document it).
    """

    parser_classes = [JSONParser]

    @extend_schema(
        request=s.JudgementInSerializer, responses={201: s.SubmitOutSerializer, 200: s.SubmitOutSerializer}
    )
    def post(self, request: Request, project_id: int) -> Response:
        args = s.vote_input(request.data)
        # One statement (one round trip, one commit) for the vote and the next lease.
        result = submit_judgement(
            labeler=request.user,
            item_id=args["item"],
            ranking=args["ranking"],
            client_key=args["client_key"],
            all_bad=args["all_bad"],
            rationale=args["rationale"],
            time_spent_ms=args["time_spent_ms"],
            demonstration=args["demonstration"],
            project_id=project_id,
            lease_next=args["next"],
        )
        body = {"judgement": s.judgement_data(result.judgement), "created": result.created}
        if args["next"]:
            body["next"] = _next_item_body(result.next_lease)
        return Response(body, status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK)


class SkipItem(APIView):
    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, item_id: int) -> Response:
        skip_item(labeler=request.user, item_id=item_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class JudgementList(generics.ListAPIView):
    """Your own judgements. Staff may filter anyone's with ?labeler= and ?project=."""

    serializer_class = s.JudgementSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter("project", int, required=False),
            OpenApiParameter("labeler", int, required=False, description="Staff only."),
        ]
    )
    def get(self, request, *args, **kwargs):
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        judgements = Judgement.objects.order_by("-id")
        params = self.request.query_params
        if not self.request.user.is_staff:
            judgements = judgements.filter(labeler=self.request.user)
        elif params.get("labeler"):
            judgements = judgements.filter(labeler_id=_int_param(params, "labeler"))
        if params.get("project"):
            judgements = judgements.filter(item__project_id=_int_param(params, "project"))
        return judgements


def _int_param(params, name: str) -> int:
    try:
        return int(params[name])
    except ValueError as exc:
        raise InvalidInput(f"{name} must be an integer") from exc


class CorrectJudgement(APIView):
    """Replace one of your judgements with a new one that supersedes it."""

    @extend_schema(request=s.CorrectionInSerializer, responses={201: s.JudgementSerializer})
    def post(self, request: Request, judgement_id: int) -> Response:
        data = s.CorrectionInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = correct_judgement(labeler=request.user, judgement_id=judgement_id, **data.validated_data)
        return Response(
            s.JudgementSerializer(result.judgement).data,
            status=status.HTTP_201_CREATED if result.created else status.HTTP_200_OK,
        )


class ImportPrompts(APIView):
    """Import prompts (optionally with responses) from a JSONL or CSV file. All rows or none."""

    permission_classes = [IsStaff]
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(request=s.ImportInSerializer, responses={201: dict})
    def post(self, request: Request, project_id: int) -> Response:
        project = get_object_or_404(Project, pk=project_id)
        data = s.ImportInSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        upload = data.validated_data["file"]
        report = imports.import_prompts(
            project=project,
            data=upload.read(),
            file_name=upload.name or "",
            fmt=data.validated_data.get("format"),
            model_version_name=data.validated_data["model_version"],
        )
        return Response(report.to_dict(), status=status.HTTP_201_CREATED)


class ProjectExports(APIView):
    permission_classes = [IsStaff]

    @extend_schema(responses=s.ExportSnapshotSerializer(many=True))
    def get(self, request: Request, project_id: int) -> Response:
        project = get_object_or_404(Project, pk=project_id)
        snapshots = project.exports.defer("judgement_ids").order_by("-version")
        return Response(s.ExportSnapshotSerializer(snapshots, many=True).data)

    @extend_schema(request=s.ExportOptionsSerializer, responses={201: s.ExportSnapshotSerializer})
    def post(self, request: Request, project_id: int) -> Response:
        project = get_object_or_404(Project, pk=project_id)
        data = s.ExportOptionsSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        unknown = set(request.data) - set(s.ExportOptionsSerializer().fields)
        if unknown:
            raise InvalidInput(f"Unknown export option(s): {sorted(unknown)}")
        options = exports.ExportOptions.from_dict(dict(data.validated_data))
        snapshot = exports.create_export(project=project, options=options, user=request.user)
        return Response(s.ExportSnapshotSerializer(snapshot).data, status=status.HTTP_201_CREATED)


class ExportDetail(generics.RetrieveAPIView):
    permission_classes = [IsStaff]
    serializer_class = s.ExportSnapshotDetailSerializer
    queryset = ExportSnapshot.objects.all()


class ExportDownload(APIView):
    """Stream the preference file of a complete export (JSON Lines)."""

    permission_classes = [IsStaff]

    @extend_schema(responses={(200, "application/jsonl"): bytes})
    def get(self, request: Request, pk: int) -> StreamingHttpResponse:
        snapshot = get_object_or_404(ExportSnapshot.objects.defer("judgement_ids"), pk=pk)
        if snapshot.status != ExportSnapshot.Status.COMPLETE:
            raise InvalidInput(f"Export {pk} is {snapshot.status}; only complete exports can be downloaded.")
        return download_response(snapshot)


class ProjectQuality(APIView):
    """Per-labeler statistics and inter-annotator agreement (Krippendorff's alpha)."""

    permission_classes = [IsStaff]

    @extend_schema(responses=dict)
    def get(self, request: Request, project_id: int) -> Response:
        project = get_object_or_404(Project, pk=project_id)
        return Response(quality.project_quality(project).to_dict())
