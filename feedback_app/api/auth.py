"""Token authentication with the token → user lookup cached in Redis for a short while."""

from __future__ import annotations

import contextlib

from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.authentication import TokenAuthentication
from rest_framework.authtoken.models import Token
from rest_framework.exceptions import AuthenticationFailed

TOKEN_CACHE_SECONDS = 60


class CachedTokenAuthentication(TokenAuthentication):
    def authenticate_credentials(self, key: str):
        cache_key = f"api-token:{key}"
        try:
            user_id = cache.get(cache_key)
        except Exception:
            user_id = None
        if user_id is None:
            try:
                token = Token.objects.select_related("user").get(key=key)
            except Token.DoesNotExist as exc:
                raise AuthenticationFailed("Invalid token.") from exc
            user = token.user
            with contextlib.suppress(Exception):  # Redis down: authenticate without the cache
                cache.set(cache_key, user.pk, TOKEN_CACHE_SECONDS)
        else:
            user = get_user_model().objects.filter(pk=user_id).first()
            if user is None:
                raise AuthenticationFailed("Invalid token.")
        if not user.is_active:
            raise AuthenticationFailed("User inactive or deleted.")
        return (user, key)
