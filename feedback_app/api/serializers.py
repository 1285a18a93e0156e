"""Input and output shapes of the REST API."""

from __future__ import annotations

from django.conf import settings
from rest_framework import serializers

from feedback_app.models import ExportSnapshot, Judgement, Project
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
