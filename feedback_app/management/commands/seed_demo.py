from django.core.management.base import BaseCommand

from feedback_app.services.demo import ensure_accounts, ensure_serving_base, seed_demo_project
from feedback_app.services.schedules import ensure_default_schedules


class Command(BaseCommand):
    help = "Create the demo accounts and the demo project (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("--items", type=int, default=120)

    def handle(self, *args, items: int, **options):
        accounts = ensure_accounts()
        project = seed_demo_project(items=items)
        ensure_default_schedules()
        serving = ensure_serving_base()
        if serving is not None:
            self.stdout.write(f"Serving version: {serving.name} ({serving.base_model})")
        self.stdout.write(f"Demo project: {project.name} ({project.items.count()} items)")
        for account in accounts:
            role = "admin" if account.is_staff else "labeler"
            self.stdout.write(f"  {role:8s} {account.username} / {account.password}")
