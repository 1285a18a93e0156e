"""``{% generation_banner %}``: a warning on admin pages while the generation backend is down."""

from __future__ import annotations

from django import template
from django.utils.html import format_html

from feedback_app.services.generation import backend_status

register = template.Library()


@register.simple_tag
def generation_banner() -> str:
    status = backend_status()
    if status.get("ok"):
        return ""
    return format_html(
        '<ul class="messagelist"><li class="error" id="generation-down">{}</li></ul>', status["message"]
    )
