"""Template helpers for the labeler UI."""

from __future__ import annotations

from django import template
from django.utils.safestring import SafeString, mark_safe

from feedback_app.services.rendering import render_markdown

register = template.Library()

ROLE_LABELS = {"user": "User", "assistant": "Assistant", "system": "System", "tool": "Tool"}


@register.filter(name="markdown")
def markdown_filter(text: str | None) -> SafeString:
    """Untrusted Markdown → sanitized HTML (raw HTML is escaped, unsafe URLs dropped)."""
    return mark_safe(render_markdown(text or ""))  # sanitized by nh3 in render_markdown


@register.filter
def role_label(role: str | None) -> str:
    role = (role or "").strip().lower()
    return ROLE_LABELS.get(role, role.capitalize() or "User")


@register.filter
def role_class(role: str | None) -> str:
    role = (role or "").strip().lower()
    return role if role in ROLE_LABELS else "other"
