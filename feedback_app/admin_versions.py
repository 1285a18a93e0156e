"""Admin pages for policy versions: list, lineage, promote (hot swap) and rollback.

Importing this module registers ``ModelVersionAdmin`` (replacing any earlier registration). The
buttons call ``feedback_app.services.registry``; vLLM's own endpoints are never exposed here.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from feedback_app import models
from feedback_app.services import registry
from feedback_app.services.errors import ServiceError
from feedback_app.services.generation import backend_status

V = models.ModelVersion


def _short(path: str, n: int = 40) -> str:
    return path if len(path) <= n else "…" + path[-(n - 1) :]


class ModelVersionAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "status_badge",
        "parent",
        "base_short",
        "adapter_short",
        "lora_name",
        "served_since",
        "promoted_by",
        "buttons",
    ]
    list_filter = ["status"]
    search_fields = ["name", "lora_name", "adapter_path", "run_dir"]
    ordering = ["-created_at"]
    raw_id_fields = ["parent"]
    readonly_fields = ["status", "status_reason", "lora_name", "promoted_by", "served_since", "lineage"]
    fields = [
        "name",
        "origin",
        "base_model",
        "adapter_path",
        "lora_name",
        "parent",
        "lineage",
        "run_dir",
        "metrics",
        "status",
        "status_reason",
        "promoted_by",
        "served_since",
    ]
    actions = ["promote_selected"]
    change_list_template = "admin/feedback_app/modelversion/change_list.html"

    def has_delete_permission(self, request: HttpRequest, obj: V | None = None) -> bool:
        return obj is None or obj.status != V.Status.SERVING

    def save_model(self, request: HttpRequest, obj: V, form, change: bool) -> None:
        if not change and obj.adapter_path and not obj.lora_name:
            obj.lora_name = registry.unique_lora_name(obj.name)
        super().save_model(request, obj, form, change)

    @admin.display(description="Status", ordering="status")
    def status_badge(self, v: V) -> str:
        colour = {"serving": "#217a3c", "candidate": "#8a6d00", "retired": "#666", "rejected": "#a61b1b"}
        return format_html('<b style="color:{}">{}</b>', colour.get(v.status, "#000"), v.status)

    @admin.display(description="Base")
    def base_short(self, v: V) -> str:
        return _short(v.base_model)

    @admin.display(description="Adapter")
    def adapter_short(self, v: V) -> str:
        return _short(v.adapter_path) if v.adapter_path else "(full weights)"

    @admin.display(description="Lineage")
    def lineage(self, v: V) -> str:
        chain = registry.lineage(v)
        return format_html_join(
            " ← ",
            '<a href="{}">{}</a> ({})',
            (
                (reverse("admin:feedback_app_modelversion_change", args=[x.pk]), x.name, x.status)
                for x in chain
            ),
        )

    @admin.display(description="")
    def buttons(self, v: V) -> str:
        if v.status in (V.Status.CANDIDATE, V.Status.RETIRED):
            return format_html(
                '<a class="button" href="{}">Promote</a>',
                reverse("admin:feedback_app_modelversion_promote", args=[v.pk]),
            )
        return ""

    def get_urls(self):
        own = [
            path(
                "<int:pk>/promote/",
                self.admin_site.admin_view(self.promote_view),
                name="feedback_app_modelversion_promote",
            ),
            path(
                "rollback/",
                self.admin_site.admin_view(self.rollback_view),
                name="feedback_app_modelversion_rollback",
            ),
        ]
        return own + super().get_urls()

    def changelist_view(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        current = registry.serving_version()
        extra = {
            "serving": current,
            "rollback_target": registry.previous_version(current) if current else None,
            "serving_alias": registry.model_name(current) if current else None,
        }
        return super().changelist_view(request, {**(extra_context or {}), **extra})

    def _confirm(self, request: HttpRequest, title: str, text: str, action: str) -> HttpResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "text": text,
            "action": action,
            "status": backend_status(),
        }
        return render(request, "admin/feedback_app/modelversion/confirm.html", context)

    def _changelist(self) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:feedback_app_modelversion_changelist"))

    def promote_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        version = get_object_or_404(V, pk=pk)
        if not self.has_change_permission(request, version):
            return HttpResponse(status=403)
        if request.method == "GET":
            current = registry.serving_version()
            text = (
                f"Load {version} on every replica, smoke-test it and switch new requests to it. "
                f"{current or 'Nothing'} is serving now and stays loaded for rollback."
            )
            return self._confirm(request, f"Promote {version}?", text, "Promote")
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        self._promote(request, version)
        return self._changelist()

    def _promote(self, request: HttpRequest, version: V) -> None:
        try:
            registry.promote_version(version, user=request.user)
        except ServiceError as e:
            self.message_user(request, e.message, messages.ERROR)
        else:
            self.message_user(request, f"{version} is now serving.", messages.SUCCESS)

    def rollback_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_change_permission(request):
            return HttpResponse(status=403)
        current = registry.serving_version()
        if request.method == "GET":
            target = registry.previous_version(current) if current else None
            text = (
                f"Serve {target} again instead of {current}; {current} is marked rejected."
                if target
                else "There is no previous version to roll back to."
            )
            return self._confirm(request, "Roll back?", text, "Roll back")
        if request.method != "POST":
            return HttpResponseNotAllowed(["GET", "POST"])
        try:
            target = registry.rollback(request.user)
        except ServiceError as e:
            self.message_user(request, e.message, messages.ERROR)
        else:
            self.message_user(request, f"Rolled back: {target} is serving again.", messages.SUCCESS)
        return self._changelist()

    @admin.action(description="Promote the selected version (hot swap)")
    def promote_selected(self, request: HttpRequest, queryset) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one version to promote.", messages.WARNING)
            return
        self._promote(request, queryset.get())


if admin.site.is_registered(V):
    admin.site.unregister(V)
admin.site.register(V, ModelVersionAdmin)
