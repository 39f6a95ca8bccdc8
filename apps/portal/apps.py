from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PortalConfig(AppConfig):
    name = "apps.portal"
    verbose_name = _("Patient portal")

    def ready(self) -> None:
        from apps.portal.receivers import on_report_amended, on_study_published
        from apps.reports import signals

        signals.study_published.connect(on_study_published, dispatch_uid="portal-study-published")
        signals.published_report_amended.connect(on_report_amended, dispatch_uid="portal-report-amended")
        from apps.portal.services import patient_grant_is_valid, share_grant_is_valid
        from apps.viewer.grants import register_grant_validator

        register_grant_validator("share", share_grant_is_valid)
        register_grant_validator("patient", patient_grant_is_valid)
