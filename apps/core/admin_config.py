from django.contrib.admin.apps import AdminConfig


class BackOfficeAdminConfig(AdminConfig):
    """Django's admin app with our back-office site as ``admin.site``."""

    default_site = "apps.core.backoffice.BackOfficeSite"
