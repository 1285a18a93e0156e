"""A sliding-window limit on each labeler's submissions, counted from the judgements themselves.

Only recorded judgements count (a replayed or refused submission does not), and counting is
an index range scan on (labeler, created_at): no other service, nothing to expire. The vote
path runs the same check inside ``feedback_submit_judgement`` (migration 0004), in the
statement that records the vote.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from feedback_app.models import Judgement
from feedback_app.services.errors import RateLimited


def vote_rate() -> tuple[int, int]:
    """(submissions allowed, per window in seconds); a limit of 0 or less disables the check."""
    return settings.FEEDBACK["VOTE_RATE"], max(1, settings.FEEDBACK["VOTE_RATE_WINDOW"])


def too_many_votes(retry_after: float) -> RateLimited:
    limit, window = vote_rate()
    return RateLimited(
        f"Too many submissions: at most {limit} every {window} s. Try again in {retry_after:.1f} s.",
        retry_after=retry_after,
    )


def check_vote_rate(user_id: int, now: datetime | None = None) -> None:
    """Raise RateLimited when the labeler already recorded the allowed number in the window."""
    limit, window = vote_rate()
    if limit <= 0:
        return
    now = now or timezone.now()
    span = timedelta(seconds=window)
    recent = list(
        Judgement.objects.filter(labeler_id=user_id, created_at__gt=now - span)
        .order_by("-created_at")
        .values_list("created_at", flat=True)[:limit]
    )
    if len(recent) >= limit:
        raise too_many_votes(max(0.001, (recent[-1] + span - now).total_seconds()))
