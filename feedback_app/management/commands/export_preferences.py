"""``manage.py export_preferences --project NAME``: write the next export snapshot, print its manifest."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from feedback_app.models import Project
from feedback_app.services.errors import ServiceError
from feedback_app.services.exports import CHOICES, MANIFEST_FILE, ExportOptions, create_export, export_path


class Command(BaseCommand):
    help = "Export a project's preferences in TRL's format as a new versioned snapshot; prints its manifest."

    def add_arguments(self, parser: CommandParser) -> None:
        defaults = ExportOptions()
        parser.add_argument("--project", required=True, help="project name")
        parser.add_argument("--format", choices=CHOICES["format"], default=defaults.format)
        parser.add_argument("--aggregation", choices=CHOICES["aggregation"], default=defaults.aggregation)
        parser.add_argument("--ties", choices=CHOICES["ties"], default=defaults.ties)
        parser.add_argument("--all-bad", choices=CHOICES["all_bad"], default=defaults.all_bad)
        parser.add_argument(
            "--include-gold", action="store_true", help="also export judgements of gold items"
        )
        parser.add_argument("--min-judgements", type=int, default=defaults.min_judgements)

    def handle(self, *args: Any, **options: Any) -> None:
        project = Project.objects.filter(name=options["project"]).first()
        if project is None:
            raise CommandError(f"No project named {options['project']!r}.")
        try:
            export_options = ExportOptions(
                format=options["format"],
                aggregation=options["aggregation"],
                ties=options["ties"],
                all_bad=options["all_bad"],
                include_gold=options["include_gold"],
                min_judgements=options["min_judgements"],
            ).validate()
            snapshot = create_export(project=project, options=export_options)
        except ServiceError as exc:
            raise CommandError(exc.message) from None
        manifest = json.loads(export_path(snapshot, MANIFEST_FILE).read_text())
        self.stdout.write(json.dumps(manifest, indent=2, ensure_ascii=False))
