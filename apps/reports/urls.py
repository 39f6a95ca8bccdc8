from django.urls import path

from apps.reports import api

report = "studies/<str:study_uid>/report"

app_name = "reports"
urlpatterns = [
    path(report, api.ReportView.as_view(), name="report"),
    path(f"{report}/sign", api.ReportSignView.as_view(), name="sign"),
    path(f"{report}/amend", api.ReportAmendView.as_view(), name="amend"),
    path(f"{report}/draft", api.ReportDraftView.as_view(), name="draft"),
    path(f"{report}/entered-in-error", api.ReportEnterInErrorView.as_view(), name="entered_in_error"),
    path(f"{report}/versions/<int:number>", api.ReportVersionView.as_view(), name="version"),
    path(f"{report}/diff", api.ReportDiffView.as_view(), name="diff"),
]
