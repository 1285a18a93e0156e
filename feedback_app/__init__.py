"""The feedback web app: annotation, exports, model versions and the training loop."""

from feedback_app.celery import app as celery_app

__all__ = ["celery_app"]
