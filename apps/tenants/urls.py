from django.urls import path

from apps.tenants.api_views import HospitalInfoView

app_name = "api"
urlpatterns = [
    path("<str:hospital_code>/", HospitalInfoView.as_view(), name="hospital"),
]
