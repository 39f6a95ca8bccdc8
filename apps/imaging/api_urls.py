from django.urls import path

from apps.imaging.api import StudyManifestView

app_name = "imaging_api"
urlpatterns = [
    path("studies/<str:study_uid>/manifest", StudyManifestView.as_view(), name="study_manifest"),
]
