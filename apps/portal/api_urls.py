from django.urls import path

from apps.portal.api import PatientContactView, StudyEntryTokenView

app_name = "portal_api"
urlpatterns = [
    path("patients/contact", PatientContactView.as_view(), name="patient_contact"),
    path("studies/<str:study_uid>/entry-token", StudyEntryTokenView.as_view(), name="entry_token"),
]
