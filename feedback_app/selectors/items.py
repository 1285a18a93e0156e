"""What a labeler is shown for a leased item: prompt and responses in the recorded order."""

from __future__ import annotations

from typing import Any

from feedback_app.models import Assignment, ComparisonItem, Prompt, Response


def leased_item_payload(assignment: Assignment, item: ComparisonItem | None = None) -> dict[str, Any]:
    """The item as the labeler sees it. Model versions and gold status are never included."""
    item = item or assignment.item
    # One query: the prompt's messages and the responses' texts.
    rows = list(
        Response.objects.filter(pk__in=assignment.shown_order).values_list("pk", "text", "prompt__messages")
    )
    messages = (
        rows[0][2] if rows else Prompt.objects.values_list("messages", flat=True).get(pk=item.prompt_id)
    )
    texts = {pk: text for pk, text, _ in rows}
    return {
        "assignment_id": assignment.pk,
        "item_id": item.pk,
        "project_id": item.project_id,
        "expires_at": assignment.expires_at,
        "messages": messages,
        "responses": [{"id": rid, "text": texts[rid]} for rid in assignment.shown_order],
    }
