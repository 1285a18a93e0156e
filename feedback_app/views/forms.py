"""Forms for the labeler UI's POST endpoints.

The ranking arrives as JSON text: groups of 1-based *display positions*, best
first, e.g. ``[[2], [1, 3]]``. Positions (not response ids) keep anything about
the responses' origin out of the page; the view maps them to response ids
through the labeler's own assignment (``shown_order``).
"""

from __future__ import annotations

import json

from django import forms
from django.conf import settings

from feedback_app.services.errors import InvalidInput

MAX_RANKING_CHARS = 2000


class ItemForm(forms.Form):
    item_id = forms.IntegerField(min_value=1)


class JudgementForm(ItemForm):
    client_key = forms.CharField(max_length=64)
    ranking = forms.CharField(max_length=MAX_RANKING_CHARS)
    all_bad = forms.BooleanField(required=False)
    rationale = forms.CharField(required=False, strip=True)
    demonstration = forms.CharField(required=False, strip=True)
    time_spent_ms = forms.IntegerField(required=False, min_value=0)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Limits come from settings at request time (tests override them).
        limits = settings.FEEDBACK
        self.fields["rationale"] = forms.CharField(required=False, max_length=limits["MAX_RATIONALE_CHARS"])
        self.fields["demonstration"] = forms.CharField(
            required=False, max_length=limits["MAX_DEMONSTRATION_CHARS"]
        )

    def clean_ranking(self) -> list[list[int]]:
        raw = self.cleaned_data["ranking"]
        try:
            value = json.loads(raw)
        except (TypeError, ValueError):
            raise forms.ValidationError("The ranking is not valid JSON.") from None
        if not isinstance(value, list) or not value:
            raise forms.ValidationError("The ranking must be a non-empty list of groups, best first.")
        groups: list[list[int]] = []
        for group in value:
            members = group if isinstance(group, list) else [group]
            if not members:
                raise forms.ValidationError("The ranking has an empty group.")
            for member in members:
                if isinstance(member, bool) or not isinstance(member, int):
                    raise forms.ValidationError(
                        f"The ranking holds {member!r}, which is not a response number."
                    )
            groups.append(list(members))
        return groups

    def clean_time_spent_ms(self) -> int:
        value = self.cleaned_data.get("time_spent_ms") or 0
        return min(value, settings.FEEDBACK["MAX_TIME_SPENT_MS"])


def response_name(number: int) -> str:
    return f"response {number}"


def positions_to_response_ids(groups: list[list[int]], shown_order: list[int]) -> list[list[int]]:
    """Map display positions (1-based) to response ids, checking every response is ranked once."""
    count = len(shown_order)
    seen: list[int] = []
    for group in groups:
        for number in group:
            if not 1 <= number <= count:
                raise InvalidInput(
                    f"The ranking names response {number}, but this item shows responses 1 to {count}."
                )
            if number in seen:
                raise InvalidInput(f"The ranking lists {response_name(number)} more than once.")
            seen.append(number)
    missing = [n for n in range(1, count + 1) if n not in seen]
    if missing:
        names = ", ".join(str(n) for n in missing)
        raise InvalidInput(f"Rank every response: response(s) {names} missing.")
    return [[int(shown_order[number - 1]) for number in group] for group in groups]


def first_error(form: forms.Form) -> str:
    for field, errors in form.errors.items():
        label = "" if field == "__all__" else f"{field.replace('_', ' ')}: "
        return f"{label}{errors[0]}"
    return "Invalid input."
