"""The public verification page a printed report's QR code opens, mounted at ``/r/``."""

from django.urls import path

from apps.reports import views

app_name = "reports_public"
urlpatterns = [path("<str:token>", views.verify_page, name="verify")]
