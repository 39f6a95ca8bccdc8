from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DicomWebConfig(AppConfig):
    name = "apps.dicomweb"
    verbose_name = _("DICOMweb")
