from django.urls import path
from rest_framework.authtoken.views import obtain_auth_token

from feedback_app.api import views

urlpatterns = [
    path("auth/token/", obtain_auth_token, name="api-token"),
    path("projects/", views.ProjectList.as_view(), name="api-projects"),
    path("projects/<int:pk>/", views.ProjectDetail.as_view(), name="api-project"),
    path("projects/<int:project_id>/next/", views.NextItem.as_view(), name="api-next"),
    path("projects/<int:project_id>/progress/", views.Progress.as_view(), name="api-progress"),
    path("projects/<int:project_id>/judgements/", views.SubmitJudgement.as_view(), name="api-submit"),
    path("projects/<int:project_id>/import/", views.ImportPrompts.as_view(), name="api-import"),
    path("projects/<int:project_id>/exports/", views.ProjectExports.as_view(), name="api-exports"),
    path("projects/<int:project_id>/quality/", views.ProjectQuality.as_view(), name="api-quality"),
    path("items/<int:item_id>/skip/", views.SkipItem.as_view(), name="api-skip"),
    path("judgements/", views.JudgementList.as_view(), name="api-judgements"),
    path("judgements/<int:judgement_id>/correct/", views.CorrectJudgement.as_view(), name="api-correct"),
    path("exports/<int:pk>/", views.ExportDetail.as_view(), name="api-export"),
    path("exports/<int:pk>/download/", views.ExportDownload.as_view(), name="api-export-download"),
]
