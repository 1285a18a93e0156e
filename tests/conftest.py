"""Shared fixtures. Tests run against the real PostgreSQL and Redis."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_settings(settings, tmp_path, monkeypatch):
    """Each test gets its own export folder, its own Redis key prefix and no vote-rate limit."""
    from feedback_app.services import assignment

    # Lazy lease reclaiming is throttled per process; each test starts unthrottled.
    monkeypatch.setattr(assignment, "_last_reclaim_check", 0.0)
    settings.EXPORT_ROOT = tmp_path / "exports"
    settings.CACHES = {
        "default": {
            **settings.CACHES["default"],
            "KEY_PREFIX": f"test-{os.getpid()}-{tmp_path.name}",
        }
    }
    settings.FEEDBACK = {**settings.FEEDBACK, "VOTE_RATE": 0}


@pytest.fixture
def labeler(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def other_labeler(db):
    from tests.factories import UserFactory

    return UserFactory()


@pytest.fixture
def staff(db):
    from tests.factories import StaffFactory

    return StaffFactory()


@pytest.fixture
def project(db):
    from tests.factories import ProjectFactory

    return ProjectFactory()


@pytest.fixture
def api_client():
    from rest_framework.test import APIClient

    return APIClient()


# Headless Chromium through Playwright's sync API, one browser for the whole session
# (tests/browser and tests/chat share it: two sync Playwright sessions cannot coexist).
CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

# Playwright's sync API runs an event loop in this thread; the ORM calls made by
# the test itself (setting up data, checking what was stored) are still synchronous.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> str:
    """The project's tiny random Llama (head_dim 64, chat template), built once per run."""
    from trainer.generation.tiny import build_tiny_policy

    return str(build_tiny_policy(tmp_path_factory.mktemp("tiny") / "model"))


@pytest.fixture(scope="session")
def chromium_browser():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def log_in(page):
    """``log_in(username)`` submits the login form the page shows, with the factories' password."""

    def submit(username: str) -> None:
        page.fill('input[name="username"]', username)
        page.fill('input[name="password"]', "pw-for-tests")
        page.click('button[type="submit"]')

    return submit


@pytest.fixture
def page(chromium_browser):
    context = chromium_browser.new_context(viewport={"width": 1440, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(10_000)
    try:
        yield page
    finally:
        context.close()
