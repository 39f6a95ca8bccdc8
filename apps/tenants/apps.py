from django.apps import AppConfig
from django.db.models.signals import post_migrate
from django.utils.translation import gettext_lazy as _


class TenantsConfig(AppConfig):
    name = "apps.tenants"
    verbose_name = _("Hospitals")

    def ready(self) -> None:
        from apps.tenants import rls

        post_migrate.connect(rls.apply_database_policies, dispatch_uid="tenants.rls")
