"""Token authentication with the token → user lookup cached for a short while.

Two levels: each process keeps a token's user for LOCAL_CACHE_SECONDS (no round trip on the
vote path), Redis keeps it for TOKEN_CACHE_SECONDS. Signals forget a changed user's tokens in
Redis, so a deactivated user or a deleted token stops working within TOKEN_CACHE_SECONDS at
worst, and within LOCAL_CACHE_SECONDS after the change when the signal fired.
"""

from __future__ import annotations

import contextlib
import time

from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

TOKEN_CACHE_SECONDS = 60
LOCAL_CACHE_SECONDS = 5
LOCAL_CACHE_SIZE = 10_000

_local: dict[str, tuple[float, object]] = {}


def _local_get(key: str):
    entry = _local.get(key)
    if entry is None or entry[0] < time.monotonic():
        return None
    return entry[1]


def _local_set(key: str, user) -> None:
    if len(_local) >= LOCAL_CACHE_SIZE:
        _local.clear()
    _local[key] = (time.monotonic() + LOCAL_CACHE_SECONDS, user)


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str):
        user = _local_get(key)
        if user is not None and user.is_active:
            return (user, key)
        cache_key = f"api-token:{key}"
        with contextlib.suppress(Exception):  # Redis down: authenticate without the cache
            user = cache.get(cache_key)
        if user is None:
            try:
                token = Token.objects.select_related("user").get(key=key)
            except Token.DoesNotExist as exc:
                raise AuthenticationFailed("Invalid token.") from exc
            user = token.user
            with contextlib.suppress(Exception):
                cache.set(cache_key, user, TOKEN_CACHE_SECONDS)
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        _local_set(key, user)
        return (user, key)


def forget_token(key: str) -> None:
    _local.pop(key, None)
    with contextlib.suppress(Exception):
        cache.delete(f"api-token:{key}")


def forget_token_on_delete(sender, instance: Token, **kwargs) -> None:
    forget_token(instance.key)


def forget_user_tokens(sender, instance, **kwargs) -> None:
    """A changed user (deactivated, staff removed) must not keep a cached identity."""
    for key in Token.objects.filter(user_id=instance.pk).values_list("key", flat=True):
        forget_token(key)
