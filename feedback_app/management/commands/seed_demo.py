from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from feedback_app.env import env_str
from feedback_app.services.demo import ensure_accounts, ensure_serving_base, seed_demo_project
from feedback_app.services.schedules import ensure_default_schedules

DEMO_CHAT_USER = "chat"


def ensure_chat_account() -> tuple[str, str]:
    """The demo end user of /chat/ (no staff rights); password from DEMO_CHAT_PASSWORD."""
    password = env_str("DEMO_CHAT_PASSWORD", "chat-demo")
    user, _ = get_user_model().objects.get_or_create(username=DEMO_CHAT_USER)
    user.is_staff = user.is_superuser = False
    user.set_password(password)
    user.save()
    return DEMO_CHAT_USER, password


class Command(BaseCommand):
    help = "Create the demo accounts and the demo project (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=120)

    def handle(self, *args, items: int, **options):
        accounts = ensure_accounts()
        chat_user, chat_password = ensure_chat_account()
        project = seed_demo_project(items=items)
        ensure_default_schedules()
        serving = ensure_serving_base()
        if serving is not None:
            self.stdout.write(f"Serving version: {serving.name} ({serving.base_model})")
        self.stdout.write(f"Demo project: {project.name} ({project.items.count()} items)")
        for account in accounts:
            role = "admin" if account.is_staff else "labeler"
            self.stdout.write(f"  {role:8s} {account.username} / {account.password}")
        self.stdout.write(f"  {'chat':8s} {chat_user} / {chat_password}  (at /chat/)")
