"""Input and output shapes of the REST API."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from feedback_app.models import ExportSnapshot, Judgement, Project
from feedback_app.services.errors import InvalidInput
from feedback_app.services.rendering import render_markdown


class ProjectSerializer(serializers.ModelSerializer):
    guidelines_html = serializers.SerializerMethodField()

    class Meta:
        model = Project
        fields = [
            "id",
            "name",
            "guidelines",
            "guidelines_html",
            "responses_per_item",
            "judgements_per_item",
            "lease_seconds",
            "is_active",
        ]

    def get_guidelines_html(self, project: Project) -> str:
        return render_markdown(project.guidelines)


class MessageSerializer(serializers.Serializer):
    role = serializers.CharField()
    content = serializers.CharField()


class ItemResponseOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()


class LeasedItemSerializer(serializers.Serializer):
    """An item as a labeler sees it: responses in the shown order, no model names."""

    assignment_id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    project_id = serializers.IntegerField()
    expires_at = serializers.DateTimeField()
    messages = MessageSerializer(many=True)
    responses = ItemResponseOutSerializer(many=True)


class ProgressSerializer(serializers.Serializer):
    done_today = serializers.IntegerField()
    left = serializers.IntegerField()


class NextItemSerializer(serializers.Serializer):
    item = LeasedItemSerializer(allow_null=True)
    detail = serializers.CharField(required=False)


class RankingField(serializers.JSONField):
    """A list of groups of response ids, best first; a bare id is a group of one."""


class JudgementInSerializer(serializers.Serializer):
    item = serializers.IntegerField(min_value=1)
    ranking = RankingField(help_text="Groups of response ids, best first, e.g. [[12], [10, 11]].")
    client_key = serializers.CharField(max_length=64, help_text="Unique per submission; reuse it on retries.")
    all_bad = serializers.BooleanField(default=False)
    rationale = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=settings.FEEDBACK["MAX_RATIONALE_CHARS"]
    )
    time_spent_ms = serializers.IntegerField(required=False, default=0, min_value=0)
    demonstration = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=settings.FEEDBACK["MAX_DEMONSTRATION_CHARS"],
        help_text="A better answer written by the labeler (used for SFT).",
    )
    next = serializers.BooleanField(default=False, help_text="Also lease and return the next item.")


class CorrectionInSerializer(serializers.Serializer):
    ranking = RankingField()
    client_key = serializers.CharField(max_length=64)
    all_bad = serializers.BooleanField(default=False)
    rationale = serializers.CharField(
        required=False, allow_blank=True, default="", max_length=settings.FEEDBACK["MAX_RATIONALE_CHARS"]
    )
    time_spent_ms = serializers.IntegerField(required=False, default=0, min_value=0)


class JudgementSerializer(serializers.ModelSerializer):
    supersedes = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Judgement
        fields = [
            "id",
            "item",
            "labeler",
            "ranking",
            "all_bad",
            "rationale",
            "shown_order",
            "time_spent_ms",
            "client_key",
            "supersedes",
            "created_at",
        ]
        read_only_fields = fields


_DATETIME = serializers.DateTimeField()


def judgement_data(judgement: Judgement) -> dict[str, Any]:
    """What ``JudgementSerializer`` gives, built directly: the vote path skips DRF's per-call
    field construction (a test keeps the two equal)."""
    return {
        "id": judgement.pk,
        "item": judgement.item_id,
        "labeler": judgement.labeler_id,
        "ranking": judgement.ranking,
        "all_bad": judgement.all_bad,
        "rationale": judgement.rationale,
        "shown_order": judgement.shown_order,
        "time_spent_ms": judgement.time_spent_ms,
        "client_key": judgement.client_key,
        "supersedes": judgement.supersedes_id,
        "created_at": _DATETIME.to_representation(judgement.created_at),
    }


def leased_item_data(payload: dict[str, Any]) -> dict[str, Any]:
    """What ``LeasedItemSerializer`` gives for a lease payload, built directly."""
    return {**payload, "expires_at": _DATETIME.to_representation(payload["expires_at"])}


def vote_input(data: Any) -> dict[str, Any]:
    """The fields of a vote (``JudgementInSerializer`` documents them), type-checked cheaply.

    Lengths, ranking shape, ids and client keys are checked by ``submit_judgement``.
    """
    if not isinstance(data, dict):
        raise InvalidInput("The body must be a JSON object.")
    missing = [name for name in ("item", "ranking", "client_key") if name not in data]
    if missing:
        raise InvalidInput(f"Missing field(s): {', '.join(missing)}.")
    args = {
        "item": data["item"],
        "ranking": data["ranking"],
        "client_key": data["client_key"],
        "all_bad": data.get("all_bad", False),
        "rationale": data.get("rationale") or "",
        "time_spent_ms": data.get("time_spent_ms", 0),
        "demonstration": data.get("demonstration") or "",
        "next": data.get("next", False),
    }
    for name in ("all_bad", "next"):
        if not isinstance(args[name], bool):
            raise InvalidInput(f"{name} must be true or false.")
    for name in ("rationale", "demonstration", "client_key"):
        if not isinstance(args[name], str):
            raise InvalidInput(f"{name} must be a string.")
    if isinstance(args["item"], bool) or not isinstance(args["item"], int) or args["item"] < 1:
        raise InvalidInput("item must be a positive integer.")
    return args


class SubmitOutSerializer(serializers.Serializer):
    judgement = JudgementSerializer()
    created = serializers.BooleanField()
    next = NextItemSerializer(required=False)


class ImportInSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=["jsonl", "csv"], required=False)
    model_version = serializers.CharField(required=False, max_length=200, default="imported")


class ExportOptionsSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=["plain", "conversational"], default="plain")
    aggregation = serializers.ChoiceField(choices=["majority", "all"], default="majority")
    ties = serializers.ChoiceField(choices=["drop", "both"], default="drop")
    all_bad = serializers.ChoiceField(choices=["drop", "keep", "demonstration"], default="drop")
    include_gold = serializers.BooleanField(default=False)
    min_judgements = serializers.IntegerField(default=1, min_value=1, max_value=1000)


class ExportSnapshotSerializer(serializers.ModelSerializer):
    judgement_count = serializers.SerializerMethodField()

    class Meta:
        model = ExportSnapshot
        fields = [
            "id",
            "project",
            "version",
            "status",
            "options",
            "content_hash",
            "counts",
            "judgement_count",
            "error",
            "created_by",
            "created_at",
            "finished_at",
        ]
        read_only_fields = fields

    def get_judgement_count(self, snapshot: ExportSnapshot) -> int:
        return int(snapshot.counts.get("judgements", 0)) if snapshot.counts else 0


class ExportSnapshotDetailSerializer(ExportSnapshotSerializer):
    class Meta(ExportSnapshotSerializer.Meta):
        fields = [*ExportSnapshotSerializer.Meta.fields, "judgement_ids"]
        read_only_fields = fields
