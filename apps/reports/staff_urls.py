"""Staff report screens, mounted at ``/h/<hospital_code>/reports/``."""

from django.urls import path

from apps.reports import views

study = "s/<uuid:study_id>/"

app_name = "reports_staff"
urlpatterns = [
    path("", views.worklist, name="worklist"),
    path(study, views.report_page, name="report"),
    path(f"{study}draft", views.draft_save, name="draft"),
    path(f"{study}sign", views.sign, name="sign"),
    path(f"{study}amend", views.amend, name="amend"),
    path(f"{study}entered-in-error", views.enter_in_error, name="entered_in_error"),
    path(f"{study}images-complete", views.images_complete, name="images_complete"),
    path(f"{study}diff", views.diff, name="diff"),
    path(f"{study}print", views.print_page, name="print"),
    path(f"{study}print.pdf", views.print_pdf, name="print_pdf"),
]
