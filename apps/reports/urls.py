from django.urls import path

from apps.reports import api, publication_api

report = "studies/<str:study_uid>/report"
publication = "studies/<str:study_uid>/publication"

app_name = "reports"
urlpatterns = [
    path(report, api.ReportView.as_view(), name="report"),
    path(f"{report}/sign", api.ReportSignView.as_view(), name="sign"),
    path(f"{report}/amend", api.ReportAmendView.as_view(), name="amend"),
    path(f"{report}/draft", api.ReportDraftView.as_view(), name="draft"),
    path(f"{report}/entered-in-error", api.ReportEnterInErrorView.as_view(), name="entered_in_error"),
    path(f"{report}/versions/<int:number>", api.ReportVersionView.as_view(), name="version"),
    path(f"{report}/diff", api.ReportDiffView.as_view(), name="diff"),
    path(publication, publication_api.PublicationView.as_view(), name="publication"),
    path(f"{publication}/images-complete", publication_api.ImagesCompleteView.as_view(), name="images_complete"),
    path(f"{publication}/withdraw", publication_api.WithdrawView.as_view(), name="withdraw"),
]
