from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ViewerConfig(AppConfig):
    name = "apps.viewer"
    verbose_name = _("Image viewer")
