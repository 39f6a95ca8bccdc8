from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ImagingConfig(AppConfig):
    name = "apps.imaging"
    verbose_name = _("Imaging archive")

    def ready(self) -> None:
        from pydicom import config

        # pydicom checks every value it reads against its VR and logs what fails, quoting the value
        # for some VRs: patient data in the logs, and a cost on every element of every header. The
        # archive's own rules (apps.imaging.dicom.rules) decide what is acceptable, with codes.
        config.settings.reading_validation_mode = config.IGNORE
