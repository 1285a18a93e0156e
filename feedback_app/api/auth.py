"""Token authentication with the token → user lookup cached in Redis for a short while.

A deactivated user or a deleted token stops working within TOKEN_CACHE_SECONDS.
"""

from __future__ import annotations

import contextlib

from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

TOKEN_CACHE_SECONDS = 60


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str):
        cache_key = f"api-token:{key}"
        user = None
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
        return (user, key)


def forget_token(key: str) -> None:
    with contextlib.suppress(Exception):
        cache.delete(f"api-token:{key}")


def forget_token_on_delete(sender, instance: Token, **kwargs) -> None:
    forget_token(instance.key)


def forget_user_tokens(sender, instance, **kwargs) -> None:
    """A changed user (deactivated, staff removed) must not keep a cached identity."""
    for key in Token.objects.filter(user_id=instance.pk).values_list("key", flat=True):
        forget_token(key)
