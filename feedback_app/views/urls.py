from django.urls import path

from feedback_app.views import labeling

urlpatterns = [
    path("", labeling.home, name="home"),
    path("projects/<int:project_id>/label/", labeling.label, name="label"),
    path("projects/<int:project_id>/label/submit/", labeling.label_submit, name="label-submit"),
    path("projects/<int:project_id>/label/skip/", labeling.label_skip, name="label-skip"),
]
