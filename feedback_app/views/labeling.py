"""The labeler UI: server-rendered pages and htmx fragments.

``label`` renders the full page (or, for htmx, just the workspace fragment) with
the labeler's next leased item. ``label_submit`` and ``label_skip`` record the
labeler's action through the services and answer with the next item's fragment,
so the page advances without a reload. Service errors come back as a small error
fragment with the service's 4xx status, retargeted (``HX-Retarget``) into the
page's message area.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from feedback_app.models import Project
from feedback_app.selectors.labeling import (
    active_projects,
    conversation,
    own_assignment,
    progress_by_project,
    progress_for,
    shown_responses,
)
from feedback_app.services.assignment import lease_next_item, skip_item
from feedback_app.services.errors import Conflict, InvalidInput, RateLimited, ServiceError
from feedback_app.services.judgements import submit_judgement
from feedback_app.views.forms import ItemForm, JudgementForm, first_error, positions_to_response_ids

logger = logging.getLogger(__name__)

WORKSPACE_TEMPLATE = "labeling/_workspace_response.html"
PAGE_TEMPLATE = "labeling/label.html"
ERROR_TEMPLATE = "labeling/_error.html"


def _project_or_404(project_id: int) -> Project:
    return get_object_or_404(Project, pk=project_id, is_active=True)


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    projects = list(active_projects())
    progress = progress_by_project(projects=projects, labeler=request.user)
    rows = [{"project": p, "progress": progress[p.pk]} for p in projects]
    return render(request, "labeling/home.html", {"rows": rows})


def _workspace_context(request: HttpRequest, project: Project) -> dict[str, Any]:
    """Lease (or resume) the labeler's next item and describe what to show."""
    lease = lease_next_item(project=project, labeler=request.user)
    context: dict[str, Any] = {"project": project, "lease": lease}
    if lease is not None:
        responses = shown_responses(lease.assignment)
        context.update(
            item=lease.item,
            assignment=lease.assignment,
            messages_list=conversation(lease.item),
            responses=responses,
            n_responses=len(responses),
            pairwise=len(responses) == 2,
            client_key=uuid.uuid4().hex,
            limits=settings.FEEDBACK,
        )
    context["progress"] = progress_for(project=project, labeler=request.user)
    return context


def _render_workspace(request: HttpRequest, project: Project, *, status: int = 200) -> HttpResponse:
    context = _workspace_context(request, project)
    template = WORKSPACE_TEMPLATE if request.htmx else PAGE_TEMPLATE
    return render(request, template, context, status=status)


def _error_response(
    request: HttpRequest, project: Project, error: ServiceError, *, item_id: int | None = None
) -> HttpResponse:
    """A 4xx answer: an inline message for htmx, the full page with the message otherwise."""
    context = {
        "project": project,
        "error": error,
        "reload": isinstance(error, Conflict) or error.status_code == 404,
    }
    if request.htmx:
        response = render(request, ERROR_TEMPLATE, context, status=error.status_code)
        response["HX-Retarget"] = "#flash"
        response["HX-Reswap"] = "innerHTML"
    else:
        context.update(_workspace_context(request, project))
        context["error"] = error
        response = render(request, PAGE_TEMPLATE, context, status=error.status_code)
    if isinstance(error, RateLimited):
        response["Retry-After"] = str(max(1, math.ceil(error.retry_after)))
    return response


def _after_action(request: HttpRequest, project: Project) -> HttpResponse:
    if request.htmx:
        return _render_workspace(request, project)
    # Plain form posts (no JavaScript): post/redirect/get.
    return redirect(reverse("label", args=[project.pk]), permanent=False)


@require_GET
def label(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_or_404(project_id)
    return _render_workspace(request, project)


def _record(request: HttpRequest, project: Project, labeler: AbstractBaseUser) -> None:
    form = JudgementForm(request.POST)
    if not form.is_valid():
        raise InvalidInput(first_error(form))
    data = form.cleaned_data
    assignment = own_assignment(project=project, labeler=labeler, item_id=data["item_id"])
    if assignment is None:
        raise Conflict("This item is not leased to you; load your next item.")
    ranking = positions_to_response_ids(data["ranking"], assignment.shown_order)
    submit_judgement(
        labeler=labeler,
        item_id=data["item_id"],
        ranking=ranking,
        client_key=data["client_key"],
        all_bad=data["all_bad"],
        rationale=data["rationale"],
        time_spent_ms=data["time_spent_ms"],
        demonstration=data["demonstration"],
    )


@require_POST
def label_submit(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_or_404(project_id)
    try:
        _record(request, project, request.user)
    except ServiceError as error:
        return _error_response(request, project, error)
    return _after_action(request, project)


@require_POST
def label_skip(request: HttpRequest, project_id: int) -> HttpResponse:
    project = _project_or_404(project_id)
    form = ItemForm(request.POST)
    try:
        if not form.is_valid():
            raise InvalidInput(first_error(form))
        item_id = form.cleaned_data["item_id"]
        if own_assignment(project=project, labeler=request.user, item_id=item_id) is None:
            raise Conflict("This item is not leased to you; load your next item.")
        skip_item(labeler=request.user, item_id=item_id)
    except ServiceError as error:
        return _error_response(request, project, error)
    return _after_action(request, project)
