"""The annotation data model.

A project holds prompts; a comparison item puts 2..N responses to one prompt in
front of labelers; an assignment is one labeler's lease on one item; a judgement
is the ranking that labeler gave. Judgements are immutable: a correction is a new
judgement whose ``supersedes`` points at the old one. Preference pairs are derived
from rankings at export time, never stored.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Project(models.Model):
    name = models.CharField(max_length=200, unique=True)
    guidelines = models.TextField(blank=True, help_text="Markdown shown to labelers.")
    responses_per_item = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(2), MaxValueValidator(9)]
    )
    judgements_per_item = models.PositiveSmallIntegerField(
        default=3,
        validators=[MinValueValidator(1), MaxValueValidator(50)],
        help_text="k: judgements wanted per item, each from a distinct labeler.",
    )
    lease_seconds = models.PositiveIntegerField(
        default=600, validators=[MinValueValidator(10), MaxValueValidator(24 * 3600)]
    )
    gold_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.0), MaxValueValidator(1.0)],
        help_text="Share of served items that are gold items (known answer), when gold items exist.",
    )
    gold_accuracy_threshold = models.FloatField(
        default=0.7, validators=[MinValueValidator(0.0), MaxValueValidator(1.0)]
    )
    is_active = models.BooleanField(default=True)
    auto_retrain = models.BooleanField(
        default=False, help_text="Retrain on schedule when enough new judgements arrived."
    )
    retrain_min_new_judgements = models.PositiveIntegerField(
        default=50, help_text="M: new judgements needed since the last run before the schedule retrains."
    )
    loop_options = models.JSONField(
        default=dict, blank=True, help_text="Default training options for scheduled runs."
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


def messages_hash(messages: list[dict[str, str]]) -> str:
    canonical = json.dumps(messages, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


class Prompt(models.Model):
    """A single-turn prompt (one user message) or a multi-turn conversation."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="prompts")
    external_id = models.CharField(max_length=200, blank=True)
    messages = models.JSONField(help_text='[{"role": "user", "content": "..."}, ...]')
    content_hash = models.CharField(max_length=64, editable=False)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "content_hash"], name="prompt_unique_content"),
            models.UniqueConstraint(
                fields=["project", "external_id"],
                condition=~Q(external_id=""),
                name="prompt_unique_external_id",
            ),
        ]

    def __str__(self) -> str:
        text = self.last_user_message
        return text[:80] + ("…" if len(text) > 80 else "")

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.content_hash = messages_hash(self.messages)
        super().save(*args, **kwargs)

    @property
    def is_multi_turn(self) -> bool:
        return len(self.messages) > 1

    @property
    def last_user_message(self) -> str:
        for message in reversed(self.messages):
            if message.get("role") == "user":
                return message.get("content", "")
        return ""


class ModelVersion(models.Model):
    """A policy version: a base model, optionally with a LoRA adapter on top.

    Exactly one version is ``serving`` at a time: new generation requests use it.
    """

    class Status(models.TextChoices):
        CANDIDATE = "candidate"
        SERVING = "serving"
        RETIRED = "retired"
        REJECTED = "rejected"

    name = models.CharField(max_length=200, unique=True)
    origin = models.CharField(max_length=500, blank=True, help_text="Where it came from.")
    base_model = models.CharField(
        max_length=500, blank=True, help_text="Hugging Face id or local directory of the base weights."
    )
    adapter_path = models.CharField(
        max_length=500, blank=True, help_text="LoRA adapter directory; empty for a full-weight version."
    )
    lora_name = models.CharField(
        max_length=100, blank=True, help_text="Name the adapter is loaded under in vLLM (unique per version)."
    )
    servers = models.JSONField(
        default=list,
        blank=True,
        help_text=(
            "vLLM servers that serve this version, [{url, pid}] (blue/green full weights, and adapters "
            "loaded on them); empty: the configured VLLM_URLS. Every process routes by it."
        ),
    )
    parent = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="children"
    )
    run_dir = models.CharField(
        max_length=500, blank=True, help_text="Trainer artifact directory that made it."
    )
    metrics = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.CANDIDATE)
    status_reason = models.TextField(blank=True)
    promoted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    served_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=Q(status="serving"), name="one_serving_version"
            ),
            models.UniqueConstraint(fields=["lora_name"], condition=~Q(lora_name=""), name="lora_name_once"),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_lora(self) -> bool:
        return bool(self.adapter_path)


class Response(models.Model):
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="responses")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="responses"
    )
    text = models.TextField()
    generation_params = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Response {self.pk} to prompt {self.prompt_id}"


class ComparisonItem(models.Model):
    class Status(models.TextChoices):
        OPEN = "open"
        COMPLETE = "complete"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="items")
    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="items")
    responses = models.ManyToManyField(Response, through="ItemResponse", related_name="items")
    is_gold = models.BooleanField(default=False)
    gold_ranking = models.JSONField(
        null=True,
        blank=True,
        help_text="For gold items: the known ranking, groups of response ids best first.",
    )
    judgements_wanted = models.PositiveSmallIntegerField(default=3)
    # Counters kept on the row so that the row lock guards them (see services.assignment).
    judgement_count = models.PositiveIntegerField(default=0)
    active_leases = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [
            models.Index(
                fields=["project", "is_gold", "id"],
                condition=Q(status="open"),
                name="item_open_queue",
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(is_gold=True)
                | Q(judgement_count__lte=models.F("judgements_wanted") - models.F("active_leases")),
                name="item_never_over_k",
            ),
        ]

    def __str__(self) -> str:
        return f"Item {self.pk} ({self.project_id})"

    def response_ids(self) -> list[int]:
        return [link.response_id for link in self.response_links.all()]


class ItemResponse(models.Model):
    item = models.ForeignKey(ComparisonItem, on_delete=models.CASCADE, related_name="response_links")
    response = models.ForeignKey(Response, on_delete=models.CASCADE)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["position"]
        constraints = [
            models.UniqueConstraint(fields=["item", "response"], name="item_response_once"),
            models.UniqueConstraint(fields=["item", "position"], name="item_position_once"),
        ]

    def __str__(self) -> str:
        return f"Item {self.item_id}, position {self.position}: response {self.response_id}"


class Assignment(models.Model):
    """One labeler's lease on one item. A labeler gets an item at most once."""

    class Status(models.TextChoices):
        LEASED = "leased"
        SUBMITTED = "submitted"
        SKIPPED = "skipped"
        EXPIRED = "expired"

    # No single-column indexes: assignment_once_per_labeler (item, labeler) and
    # assignment_by_labeler (labeler, status) lead with these columns.
    item = models.ForeignKey(
        ComparisonItem, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="assignments", db_index=False
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.LEASED)
    shown_order = models.JSONField(help_text="Response ids in the order they were displayed.")
    leased_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["item", "labeler"], name="assignment_once_per_labeler"),
        ]
        indexes = [
            models.Index(fields=["expires_at"], condition=Q(status="leased"), name="assignment_live_leases"),
            models.Index(fields=["labeler", "status"], name="assignment_by_labeler"),
        ]

    def __str__(self) -> str:
        return f"Assignment {self.pk}: item {self.item_id} → {self.labeler_id} ({self.status})"


class ImmutableModel(models.Model):
    """Rows are written once; updates raise instead of silently rewriting history."""

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None and not self._state.adding:
            raise ValueError(f"{type(self).__name__} rows are immutable; create a new one instead")
        super().save(*args, **kwargs)


class Judgement(ImmutableModel):
    """A full ranking of an item's responses by one labeler.

    ``ranking`` is a list of groups of response ids, best first; responses in one
    group are tied, e.g. ``[[12], [10, 11]]``. ``all_bad`` flags that no response
    is acceptable (the ranking still orders them).
    """

    # No single-column indexes: judgement_item_labeler (item, labeler) and
    # judgement_idempotent (labeler, client_key) lead with these columns.
    item = models.ForeignKey(
        ComparisonItem, on_delete=models.CASCADE, related_name="judgements", db_index=False
    )
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="judgements", db_index=False
    )
    assignment = models.ForeignKey(
        Assignment, on_delete=models.PROTECT, null=True, blank=True, related_name="judgements"
    )
    ranking = models.JSONField()
    all_bad = models.BooleanField(default=False)
    rationale = models.TextField(blank=True)
    shown_order = models.JSONField()
    time_spent_ms = models.PositiveIntegerField(default=0)
    client_key = models.CharField(max_length=64)
    supersedes = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="superseded_by"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["labeler", "client_key"], name="judgement_idempotent"),
        ]
        indexes = [
            models.Index(fields=["item", "labeler"], name="judgement_item_labeler"),
            models.Index(fields=["labeler", "created_at"], name="judgement_labeler_time"),
        ]

    def __str__(self) -> str:
        return f"Judgement {self.pk} on item {self.item_id} by {self.labeler_id}"


class Demonstration(ImmutableModel):
    """A labeler-written better answer: training data for SFT."""

    prompt = models.ForeignKey(Prompt, on_delete=models.CASCADE, related_name="demonstrations")
    item = models.ForeignKey(
        ComparisonItem, on_delete=models.SET_NULL, null=True, blank=True, related_name="demonstrations"
    )
    labeler = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="demonstrations"
    )
    text = models.TextField()
    judgement = models.OneToOneField(
        Judgement, on_delete=models.SET_NULL, null=True, blank=True, related_name="demonstration"
    )
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"Demonstration {self.pk} for prompt {self.prompt_id}"


class ExportSnapshot(models.Model):
    """A versioned, hashed export of preferences: the contract with the trainer."""

    class Status(models.TextChoices):
        RUNNING = "running"
        COMPLETE = "complete"
        FAILED = "failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    version = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    options = models.JSONField(default=dict)
    file_path = models.CharField(max_length=500, blank=True)
    content_hash = models.CharField(max_length=80, blank=True)
    counts = models.JSONField(default=dict)
    judgement_ids = ArrayField(models.BigIntegerField(), default=list, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["project", "version"], name="export_version_once"),
        ]

    def __str__(self) -> str:
        return f"{self.project} export v{self.version}"


class TrainingRun(models.Model):
    """One pass of the loop: export → (SFT) → reward model → policy update → gate → register → promote.

    At most one run is ``running`` at a time (a partial unique index): the pipeline lock.
    """

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        PROMOTED = "promoted"
        CANDIDATE = "candidate"
        REJECTED = "rejected"
        FAILED = "failed"

    class Trigger(models.TextChoices):
        MANUAL = "manual"
        SCHEDULE = "schedule"
        SIMULATION = "simulation"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="training_runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    running = models.BooleanField(default=False, editable=False, help_text="Holds the one-pipeline lock.")
    stage = models.CharField(max_length=20, blank=True)
    trigger = models.CharField(max_length=12, choices=Trigger.choices, default=Trigger.MANUAL)
    options = models.JSONField(default=dict, blank=True)
    launched_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    export = models.ForeignKey(
        ExportSnapshot, on_delete=models.SET_NULL, null=True, blank=True, related_name="training_runs"
    )
    base_version = models.ForeignKey(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+",
        help_text="The version that was serving when the run started (the reference).",
    )  # fmt: skip
    candidate = models.OneToOneField(
        ModelVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="training_run"
    )
    run_dir = models.CharField(max_length=500, blank=True)
    step_dirs = models.JSONField(default=dict, blank=True, help_text="Artifact directory of each stage.")
    progress = models.JSONField(default=dict, blank=True, help_text="stage, step, total, loss, eta_s")
    history = models.JSONField(default=list, blank=True, help_text="Loss and metric points for the plots.")
    metrics = models.JSONField(default=dict, blank=True)
    gate_report = models.JSONField(default=dict, blank=True)
    log = models.TextField(blank=True)
    error = models.TextField(blank=True)
    celery_task_id = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["running"], condition=Q(running=True), name="one_pipeline_at_a_time"
            ),
        ]

    def __str__(self) -> str:
        return f"Training run {self.pk} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in {
            self.Status.PROMOTED,
            self.Status.CANDIDATE,
            self.Status.REJECTED,
            self.Status.FAILED,
        }


class AuditEvent(models.Model):
    """Who launched, promoted, rejected or rolled back what, and when."""

    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    action = models.CharField(max_length=40)
    target = models.CharField(max_length=200)
    details = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        who = self.actor or "system"
        return f"{self.created_at:%Y-%m-%d %H:%M} {who} {self.action} {self.target}"


class Conversation(models.Model):
    """An end user's chat (``/chat/``). Only its owner ever reads it."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="conversations")
    title = models.CharField(max_length=200, blank=True)
    client_key = models.CharField(
        max_length=64, blank=True, help_text="Key of the request that started it (a retry reuses it)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-updated_at", "-pk"]
        indexes = [models.Index(fields=["user", "-updated_at"], name="conversation_by_user")]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "client_key"],
                condition=~Q(client_key=""),
                name="conversation_client_key_once",
            ),
        ]

    def __str__(self) -> str:
        return self.title or f"Conversation {self.pk}"


class ChatMessage(models.Model):
    """One turn of a conversation.

    An assistant message records the model version that wrote it and its sampling parameters.
    When the turn was a "which is better?" comparison, ``item`` holds the two candidates (a
    comparison item of the chat feedback project, judged by the user) and ``response`` the one
    the user chose, which continues the conversation.
    """

    class Role(models.TextChoices):
        USER = "user"
        ASSISTANT = "assistant"

    class Status(models.TextChoices):
        PENDING = "pending"  # waiting for its answer to be generated
        STREAMING = "streaming"  # being generated now
        CHOOSING = "choosing"  # two candidates shown, waiting for the user's choice
        COMPLETE = "complete"
        FAILED = "failed"  # generation failed or was interrupted; it can be retried

    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    position = models.PositiveIntegerField()
    role = models.CharField(max_length=10, choices=Role.choices)
    content = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.COMPLETE)
    error = models.TextField(blank=True)
    compare = models.BooleanField(default=False, help_text="Answer twice and ask which is better.")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="chat_messages"
    )
    generation_params = models.JSONField(default=dict, blank=True)
    item = models.ForeignKey(
        ComparisonItem, on_delete=models.SET_NULL, null=True, blank=True, related_name="chat_messages"
    )
    response = models.ForeignKey(Response, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    judgement = models.ForeignKey(
        Judgement, on_delete=models.SET_NULL, null=True, blank=True, related_name="chat_messages"
    )
    client_key = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["conversation", "position"]
        constraints = [
            models.UniqueConstraint(fields=["conversation", "position"], name="chat_message_position_once"),
            models.UniqueConstraint(
                fields=["conversation", "client_key"],
                condition=~Q(client_key=""),
                name="chat_message_client_key_once",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.role} message {self.position} of conversation {self.conversation_id}"
