"""Admin for the closed loop: launch retraining, watch a run live, promote, reject, roll back."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, render
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.safestring import mark_safe

from feedback_app import models
from feedback_app.admin_base import ReadOnlyAdmin
from feedback_app.services import pipeline, registry
from feedback_app.services.errors import ServiceError
from feedback_app.services.plots import run_charts


class LaunchForm(forms.Form):
    project = forms.ModelChoiceField(queryset=models.Project.objects.filter(is_active=True))
    algorithm = forms.ChoiceField(
        choices=[
            ("dpo", "DPO (offline, preference pairs)"),
            ("rloo", "PPO-style RLOO (online, reward model + KL)"),
        ]
    )
    loss_type = forms.ChoiceField(
        choices=[("sigmoid", "DPO (sigmoid)"), ("ipo", "IPO"), ("simpo", "SimPO"), ("hinge", "hinge")],
        help_text="DPO loss variant (ignored for RLOO).",
    )
    epochs = forms.FloatField(initial=2.0, min_value=0.1, max_value=100)
    beta = forms.FloatField(
        initial=0.1, min_value=0.001, max_value=10, help_text="DPO beta / KL coefficient."
    )
    learning_rate = forms.FloatField(initial=5e-4, min_value=1e-7, max_value=1)
    reward_epochs = forms.FloatField(initial=2.0, min_value=0.1, max_value=100)
    sft = forms.BooleanField(required=False, initial=True, help_text="Run SFT first on new demonstrations.")
    min_win_rate = forms.FloatField(
        initial=0.5, min_value=0, max_value=1, help_text="Gate: win rate under the reward model."
    )
    min_pair_accuracy = forms.FloatField(
        initial=0.5, min_value=0, max_value=1, help_text="Gate: held-out pair accuracy."
    )
    max_kl = forms.FloatField(initial=10.0, min_value=0, help_text="Gate: maximum KL to the serving version.")
    auto_promote = forms.BooleanField(
        required=False, initial=True, help_text="Promote at once if the gate passes."
    )

    def loop_options(self) -> dict:
        data = dict(self.cleaned_data)
        data.pop("project")
        return data


@admin.register(models.TrainingRun)
class TrainingRunAdmin(admin.ModelAdmin):
    list_display = [
        "__str__",
        "project",
        "status",
        "stage",
        "progress_bar",
        "trigger",
        "launched_by",
        "candidate",
        "created_at",
    ]
    list_filter = ["status", "trigger", "project"]
    list_select_related = ["project", "launched_by", "candidate"]
    change_list_template = "admin/feedback_app/trainingrun/change_list.html"

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return request.user.is_staff

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    @admin.display(description="Progress")
    def progress_bar(self, run: models.TrainingRun) -> str:
        progress = run.progress or {}
        total, step = progress.get("total") or 0, progress.get("step") or 0
        percent = int(100 * step / total) if total else (100 if run.is_finished else 0)
        return format_html('<progress max="100" value="{}"></progress> {}%', percent, percent)

    def get_urls(self):
        view = self.admin_site.admin_view
        own = [
            path("launch/", view(self.launch_view), name="feedback_app_trainingrun_launch"),
            path("<int:pk>/live/", view(self.live_fragment), name="feedback_app_trainingrun_live"),
            path("<int:pk>/promote/", view(self.promote_view), name="feedback_app_trainingrun_promote"),
            path("<int:pk>/reject/", view(self.reject_view), name="feedback_app_trainingrun_reject"),
            path("rollback/", view(self.rollback_view), name="feedback_app_trainingrun_rollback"),
        ]
        return own + super().get_urls()

    def _context(self, request: HttpRequest, **extra) -> dict:
        return {**self.admin_site.each_context(request), "opts": self.model._meta, **extra}

    def launch_view(self, request: HttpRequest) -> HttpResponse:
        initial = {}
        if request.GET.get("project"):
            initial["project"] = request.GET["project"]
        form = LaunchForm(request.POST or None, initial=initial)
        if request.method == "POST" and form.is_valid():
            from feedback_app.tasks import start_pipeline

            try:
                run = pipeline.launch_run(
                    project=form.cleaned_data["project"], options=form.loop_options(), user=request.user
                )
            except ServiceError as exc:
                messages.error(request, exc.message)
            else:
                try:
                    start_pipeline(run.pk)
                except ServiceError as exc:
                    messages.error(request, exc.message)
                else:
                    messages.success(request, f"Launched {run}.")
                return HttpResponseRedirect(reverse("admin:feedback_app_trainingrun_change", args=[run.pk]))
        return render(
            request,
            "admin/feedback_app/trainingrun/launch.html",
            self._context(request, form=form, title="Launch retraining"),
        )

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context=None
    ) -> HttpResponse:
        run = get_object_or_404(
            models.TrainingRun.objects.select_related("candidate", "export", "base_version"), pk=object_id
        )
        context = self._context(request, run=run, title=str(run), **self._live_context(run))
        return render(request, "admin/feedback_app/trainingrun/detail.html", context)

    def _live_context(self, run: models.TrainingRun) -> dict:
        progress = run.progress or {}
        total, step = progress.get("total") or 0, progress.get("step") or 0
        return {
            "percent": int(100 * step / total) if total else (100 if run.is_finished else 0),
            "charts": [
                mark_safe(svg) for svg in run_charts(run.history or [])
            ],  # numbers and escaped text only
            "serving": registry.serving_version(),
            "can_promote": bool(
                run.candidate and run.candidate.status == models.ModelVersion.Status.CANDIDATE
            ),
            "can_reject": bool(
                run.candidate and run.candidate.status == models.ModelVersion.Status.CANDIDATE
            ),
        }

    def live_fragment(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = get_object_or_404(models.TrainingRun.objects.select_related("candidate"), pk=pk)
        return render(
            request, "admin/feedback_app/trainingrun/_live.html", {"run": run, **self._live_context(run)}
        )

    def promote_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = get_object_or_404(models.TrainingRun, pk=pk)
        if request.method == "POST" and run.candidate_id:
            try:
                registry.promote_version(run.candidate, user=request.user)
            except ServiceError as exc:
                messages.error(request, f"Promotion failed: {exc.message}")
            else:
                pipeline.audit(request.user, "promote", run.candidate, {"run": run.pk})
                models.TrainingRun.objects.filter(pk=pk).update(status=models.TrainingRun.Status.PROMOTED)
                from feedback_app.tasks import enqueue_refill

                enqueue_refill(run.candidate_id)
                messages.success(request, f"{run.candidate} is now serving.")
        return HttpResponseRedirect(reverse("admin:feedback_app_trainingrun_change", args=[pk]))

    def reject_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        run = get_object_or_404(models.TrainingRun, pk=pk)
        if request.method == "POST" and run.candidate_id:
            updated = models.ModelVersion.objects.filter(
                pk=run.candidate_id, status=models.ModelVersion.Status.CANDIDATE
            ).update(status=models.ModelVersion.Status.REJECTED, status_reason=f"rejected by {request.user}")
            if updated:
                models.TrainingRun.objects.filter(pk=pk).update(status=models.TrainingRun.Status.REJECTED)
                pipeline.audit(request.user, "reject", run.candidate, {"run": run.pk})
                messages.success(request, f"{run.candidate} rejected.")
        return HttpResponseRedirect(reverse("admin:feedback_app_trainingrun_change", args=[pk]))

    def rollback_view(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST":
            try:
                version = registry.rollback(request.user)
            except ServiceError as exc:
                messages.error(request, f"Rollback failed: {exc.message}")
            else:
                pipeline.audit(request.user, "rollback", version)
                messages.success(request, f"Rolled back: {version} is serving again.")
        return HttpResponseRedirect(
            request.POST.get("next") or reverse("admin:feedback_app_trainingrun_changelist")
        )


@admin.register(models.AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "target"]
    list_filter = ["action"]
