"""Login is required everywhere except the login page, static files and token-authenticated API calls."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse

PUBLIC_PREFIXES = ("/accounts/login/", "/static/", "/healthz")
API_PREFIX = "/api/"


class LoginRequiredEverywhereMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        path = request.path_info
        # The API authenticates itself (token or session) and answers 401/403 in JSON.
        # The admin has its own login page.
        # The path is checked first: API calls never load a session to learn who is asking.
        if (
            path.startswith(PUBLIC_PREFIXES)
            or path.startswith(API_PREFIX)
            or path.startswith("/admin/")
            or request.user.is_authenticated
        ):
            return self.get_response(request)
        return redirect_to_login(request.get_full_path(), settings.LOGIN_URL)
