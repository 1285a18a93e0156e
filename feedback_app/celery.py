"""The Celery application: Redis broker, tasks discovered from feedback_app.tasks."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "feedback_app.settings")

app = Celery("feedback_app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["feedback_app"])
