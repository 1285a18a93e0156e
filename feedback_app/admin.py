"""Staff pages: projects (import, export, quality), items, judgements (read-only), exports."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import Count
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html

from feedback_app import models
from feedback_app.admin_base import ReadOnlyAdmin
from feedback_app.services import exports, imports, quality
from feedback_app.services.errors import ServiceError
from feedback_app.views.downloads import download_response


class ImportForm(forms.Form):
    file = forms.FileField(help_text="JSON Lines (.jsonl) or CSV (.csv)")
    format = forms.ChoiceField(
        choices=[("", "Guess from the file name"), ("jsonl", "JSON Lines"), ("csv", "CSV")], required=False
    )
    model_version = forms.CharField(initial="imported", max_length=200)


class ExportForm(forms.Form):
    format = forms.ChoiceField(
        choices=[("plain", "Plain text"), ("conversational", "Conversational messages")]
    )
    aggregation = forms.ChoiceField(
        choices=[("majority", "Majority vote across labelers"), ("all", "Every judgement")]
    )
    ties = forms.ChoiceField(
        choices=[("drop", "Drop tied pairs"), ("both", "Emit both directions, marked tie")]
    )
    all_bad = forms.ChoiceField(
        choices=[
            ("drop", "Drop 'all bad' judgements"),
            ("keep", "Keep their ranking"),
            ("demonstration", "Use the labeler's better answer as chosen"),
        ]
    )
    include_gold = forms.BooleanField(required=False)
    min_judgements = forms.IntegerField(min_value=1, initial=1)


@admin.register(models.Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "is_active", "judgements_per_item", "responses_per_item", "item_count", "tools"]
    list_filter = ["is_active"]
    search_fields = ["name"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_items=Count("items", distinct=True))

    @admin.display(description="Items", ordering="_items")
    def item_count(self, project: models.Project) -> int:
        return project._items

    @admin.display(description="Tools")
    def tools(self, project: models.Project) -> str:
        return format_html(
            '<a href="{}">Import</a> · <a href="{}">Export</a> · <a href="{}">Quality</a> · '
            '<a href="{}?project={}">Retrain</a>',
            reverse("admin:feedback_app_project_import", args=[project.pk]),
            reverse("admin:feedback_app_project_export", args=[project.pk]),
            reverse("admin:feedback_app_project_quality", args=[project.pk]),
            reverse("admin:feedback_app_trainingrun_launch"),
            project.pk,
        )

    def get_urls(self):
        own = [
            path(
                "<int:pk>/import/",
                self.admin_site.admin_view(self.import_view),
                name="feedback_app_project_import",
            ),
            path(
                "<int:pk>/export/",
                self.admin_site.admin_view(self.export_view),
                name="feedback_app_project_export",
            ),
            path(
                "<int:pk>/quality/",
                self.admin_site.admin_view(self.quality_view),
                name="feedback_app_project_quality",
            ),
        ]
        return own + super().get_urls()

    def _context(self, request: HttpRequest, project: models.Project, title: str) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "project": project,
            "title": title,
        }

    def import_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        project = get_object_or_404(models.Project, pk=pk)
        context = self._context(request, project, f"Import prompts into {project}")
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                report = imports.import_prompts(
                    project=project,
                    data=upload.read(),
                    file_name=upload.name or "",
                    fmt=form.cleaned_data["format"] or None,
                    model_version_name=form.cleaned_data["model_version"],
                )
            except ServiceError as exc:
                context.update(error=exc.message, row_errors=exc.details or [])
                return render(
                    request, "admin/feedback_app/import.html", {**context, "form": form}, status=400
                )
            context["report"] = report.to_dict()
            messages.success(
                request,
                f"Imported {report.prompts_created} prompts and {report.items_created} comparison items.",
            )
        return render(request, "admin/feedback_app/import.html", {**context, "form": form})

    def export_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        project = get_object_or_404(models.Project, pk=pk)
        context = self._context(request, project, f"Export preferences of {project}")
        form = ExportForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                options = exports.ExportOptions.from_dict(form.cleaned_data)
                snapshot = exports.create_export(project=project, options=options, user=request.user)
            except ServiceError as exc:
                messages.error(request, exc.message)
            else:
                messages.success(request, f"Export v{snapshot.version} written: {snapshot.counts}")
                return HttpResponseRedirect(
                    reverse("admin:feedback_app_exportsnapshot_change", args=[snapshot.pk])
                )
        context["recent"] = project.exports.defer("judgement_ids").order_by("-version")[:10]
        return render(request, "admin/feedback_app/export.html", {**context, "form": form})

    def quality_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        project = get_object_or_404(models.Project, pk=pk)
        context = self._context(request, project, f"Quality of {project}")
        context["report"] = quality.project_quality(project)
        return render(request, "admin/feedback_app/quality.html", context)


@admin.register(models.Prompt)
class PromptAdmin(admin.ModelAdmin):
    list_display = ["id", "__str__", "project", "external_id", "created_at"]
    list_filter = ["project"]
    search_fields = ["external_id", "messages"]
    readonly_fields = ["content_hash"]


@admin.register(models.Response)
class ResponseAdmin(admin.ModelAdmin):
    list_display = ["id", "prompt", "model_version", "created_at"]
    list_filter = ["model_version"]
    raw_id_fields = ["prompt"]


class ItemResponseInline(admin.TabularInline):
    model = models.ItemResponse
    raw_id_fields = ["response"]
    extra = 0


@admin.register(models.ComparisonItem)
class ComparisonItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "prompt", "status", "is_gold", "judgement_count", "active_leases"]
    list_filter = ["project", "status", "is_gold"]
    raw_id_fields = ["prompt"]
    readonly_fields = ["judgement_count", "active_leases"]
    inlines = [ItemResponseInline]


@admin.register(models.Assignment)
class AssignmentAdmin(ReadOnlyAdmin):
    list_display = ["id", "item", "labeler", "status", "leased_at", "expires_at"]
    list_filter = ["status", "item__project"]
    list_select_related = ["item", "labeler"]


@admin.register(models.Judgement)
class JudgementAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "item",
        "labeler",
        "ranking",
        "all_bad",
        "time_spent_ms",
        "supersedes",
        "created_at",
    ]
    list_filter = ["item__project", "all_bad", "labeler"]
    list_select_related = ["item", "labeler"]
    search_fields = ["rationale", "client_key"]


@admin.register(models.Demonstration)
class DemonstrationAdmin(ReadOnlyAdmin):
    list_display = ["id", "prompt", "labeler", "created_at"]
    list_filter = ["prompt__project"]


@admin.register(models.ExportSnapshot)
class ExportSnapshotAdmin(ReadOnlyAdmin):
    list_display = ["__str__", "status", "content_hash", "counts", "created_by", "created_at", "download"]
    list_filter = ["project", "status"]
    exclude = ["judgement_ids"]
    readonly_fields = ["judgement_total", "download"]

    def get_queryset(self, request):
        return super().get_queryset(request).defer("judgement_ids")

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_view_permission(request)

    @admin.display(description="Judgements in it")
    def judgement_total(self, snapshot: models.ExportSnapshot) -> int:
        return int((snapshot.counts or {}).get("judgements", 0))

    @admin.display(description="File")
    def download(self, snapshot: models.ExportSnapshot) -> str:
        if snapshot.status != models.ExportSnapshot.Status.COMPLETE:
            return "—"
        return format_html(
            '<a href="{}">preferences.jsonl</a>',
            reverse("admin:feedback_app_export_download", args=[snapshot.pk]),
        )

    def get_urls(self):
        own = [
            path(
                "<int:pk>/download/",
                self.admin_site.admin_view(self.download_view),
                name="feedback_app_export_download",
            )
        ]
        return own + super().get_urls()

    def download_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        snapshot = get_object_or_404(models.ExportSnapshot.objects.defer("judgement_ids"), pk=pk)
        if snapshot.status != models.ExportSnapshot.Status.COMPLETE:
            messages.error(request, f"Export {pk} is {snapshot.status}.")
            return HttpResponseRedirect(reverse("admin:feedback_app_exportsnapshot_changelist"))
        return download_response(snapshot)


class ChatMessageInline(admin.TabularInline):
    model = models.ChatMessage
    fields = ["position", "role", "status", "content", "model_version", "item", "judgement", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(models.Conversation)
class ConversationAdmin(ReadOnlyAdmin):
    list_display = ["id", "title", "user", "created_at", "updated_at"]
    list_filter = ["created_at"]
    search_fields = ["title", "user__username"]
    list_select_related = ["user"]
    inlines = [ChatMessageInline]


# Model versions (promote, rollback, lineage) and the training loop live in their own modules.
from feedback_app import admin_loop, admin_versions  # noqa: E402, F401
