"""A fixed-window rate limit per labeler, counted atomically in Redis."""

from __future__ import annotations

import time
from functools import lru_cache

import redis
from django.conf import settings

from feedback_app.services.errors import RateLimited


@lru_cache(maxsize=1)
def _redis() -> redis.Redis:
    return redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)


def check_vote_rate(user_id: int) -> None:
    """Count one submission; raise RateLimited past the configured rate.

    When Redis is unreachable the limit is not enforced: a vote is worth more
    than the limit, and the database still guards against duplicates.
    """
    limit = settings.FEEDBACK["VOTE_RATE"]
    window = max(1, settings.FEEDBACK["VOTE_RATE_WINDOW"])
    if limit <= 0:
        return
    now = time.time()
    bucket = int(now // window)
    key = f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:votes:{user_id}:{bucket}"
    try:
        pipe = _redis().pipeline()
        pipe.incr(key)
        pipe.expire(key, window + 1)
        count, _ = pipe.execute()
    except redis.RedisError:
        return
    if count > limit:
        retry_after = round((bucket + 1) * window - now, 3)
        raise RateLimited(
            f"Too many submissions: at most {limit} every {window} s. Try again in {retry_after:.1f} s.",
            retry_after=retry_after,
        )
