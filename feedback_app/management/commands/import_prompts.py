"""``manage.py import_prompts --project NAME FILE``: import prompts from JSONL or CSV."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from feedback_app.models import Project
from feedback_app.services.errors import ServiceError
from feedback_app.services.imports import FORMATS, ImportRejected, import_prompts


class Command(BaseCommand):
    help = "Import prompts (optionally with responses) from a JSONL or CSV file; prints the report as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="path of the .jsonl or .csv file")
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--format", choices=FORMATS, help="file format (default: from the file name)")
        parser.add_argument("--create-project", action="store_true", help="create the project if missing")
        parser.add_argument(
            "--model-version", default="imported", help="model version for responses that name none"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        data = self._read(path)
        try:
            # A project created here is rolled back with a rejected import.
            with transaction.atomic():
                project = self._project(options["project"], create=options["create_project"])
                report = import_prompts(
                    project=project,
                    data=data,
                    file_name=path.name,
                    fmt=options["format"],
                    model_version_name=options["model_version"],
                )
        except ImportRejected as exc:
            for problem in exc.details or []:
                self.stderr.write(f"row {problem['row']}: {'; '.join(problem['errors'])}")
            raise CommandError(exc.message) from None
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        self.stdout.write(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))

    def _project(self, name: str, *, create: bool) -> Project:
        if create:
            project, _ = Project.objects.get_or_create(name=name)
            return project
        project = Project.objects.filter(name=name).first()
        if project is None:
            raise CommandError(f"No project named {name!r}; pass --create-project to create it.")
        return project

    def _read(self, path: Path) -> bytes:
        if not path.is_file():
            raise CommandError(f"{path} is not a file")
        size, limit = path.stat().st_size, settings.FEEDBACK_MAX_IMPORT_BYTES
        if size > limit:
            raise CommandError(f"{path} is {size:,} bytes; the import limit is {limit:,} bytes.")
        return path.read_bytes()
