"""The index of the archive: patients, studies, series, instances. Hospital on every row.

Patient identifiers (MRN, name, birth date, phone, ID-card number) are stored sealed with the
hospital's field key; exact lookups go through keyed-hash blind indexes. The DICOM header of each
instance (which repeats the patient's identity) is stored sealed too.
"""

import uuid

from django.db import models
from django.utils.translation import gettext_lazy as _

from apps.tenants.models import TenantOwnedModel


class Patient(TenantOwnedModel):
    class Sex(models.TextChoices):
        MALE = "M", _("Male")
        FEMALE = "F", _("Female")
        OTHER = "O", _("Other")
        UNKNOWN = "", _("Unknown")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    mrn_sealed = models.BinaryField(editable=False)
    mrn_index = models.CharField(max_length=64, editable=False)
    name_sealed = models.BinaryField(editable=False)
    name_index = models.CharField(max_length=64, editable=False, blank=True)
    birth_date_sealed = models.BinaryField(editable=False, default=b"")
    sex = models.CharField(_("sex"), max_length=1, choices=Sex.choices, blank=True)
    phone_sealed = models.BinaryField(editable=False, default=b"")
    phone_index = models.CharField(max_length=64, editable=False, blank=True)
    id_number_sealed = models.BinaryField(editable=False, default=b"")
    id_number_index = models.CharField(max_length=64, editable=False, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("patient")
        verbose_name_plural = _("patients")
        constraints = [models.UniqueConstraint(fields=["hospital", "mrn_index"], name="patient_unique_mrn")]
        indexes = [
            models.Index(fields=["hospital", "name_index"]),
            models.Index(fields=["hospital", "phone_index"]),
            models.Index(fields=["hospital", "id_number_index"]),
        ]

    def __str__(self) -> str:
        return str(self.public_id)


class Study(TenantOwnedModel):
    class EncounterType(models.TextChoices):
        OUTPATIENT = "outpatient", _("Outpatient")
        INPATIENT = "inpatient", _("Inpatient")
        EMERGENCY = "emergency", _("Emergency")
        PHYSICAL_EXAM = "physical_exam", _("Physical exam")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_instance_uid = models.CharField(max_length=64)
    accession_number = models.CharField(max_length=16, blank=True)
    study_id = models.CharField(max_length=16, blank=True)
    study_date = models.DateField(null=True, blank=True)
    study_time = models.TimeField(null=True, blank=True)
    description = models.CharField(max_length=64, blank=True)
    referring_physician_name = models.CharField(max_length=200, blank=True)
    modalities = models.CharField(max_length=64, blank=True, help_text=_("Backslash-separated"))
    encounter_type = models.CharField(max_length=16, choices=EncounterType.choices, default=EncounterType.OUTPATIENT)
    number_of_series = models.PositiveIntegerField(default=0)
    number_of_instances = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = _("study")
        verbose_name_plural = _("studies")
        constraints = [models.UniqueConstraint(fields=["hospital", "study_instance_uid"], name="study_unique_uid")]
        indexes = [
            models.Index(fields=["hospital", "study_date"]),
            models.Index(fields=["hospital", "accession_number"]),
            models.Index(fields=["hospital", "patient"]),
        ]

    def __str__(self) -> str:
        return self.study_instance_uid


class Series(TenantOwnedModel):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    study = models.ForeignKey(Study, on_delete=models.PROTECT, related_name="series")
    series_instance_uid = models.CharField(max_length=64)
    modality = models.CharField(max_length=16, blank=True)
    series_number = models.IntegerField(null=True, blank=True)
    description = models.CharField(max_length=64, blank=True)
    body_part_examined = models.CharField(max_length=16, blank=True)
    manufacturer = models.CharField(max_length=64, blank=True)
    station_name = models.CharField(max_length=16, blank=True)
    institution_name = models.CharField(max_length=64, blank=True)
    number_of_instances = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("series")
        verbose_name_plural = _("series")
        constraints = [models.UniqueConstraint(fields=["hospital", "series_instance_uid"], name="series_unique_uid")]
        indexes = [models.Index(fields=["hospital", "study", "series_number"])]

    def __str__(self) -> str:
        return self.series_instance_uid


class Instance(TenantOwnedModel):
    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    series = models.ForeignKey(Series, on_delete=models.PROTECT, related_name="instances")
    sop_class_uid = models.CharField(max_length=64)
    sop_instance_uid = models.CharField(max_length=64)
    instance_number = models.IntegerField(null=True, blank=True)
    transfer_syntax_uid = models.CharField(max_length=64)
    rows = models.PositiveIntegerField(null=True, blank=True)
    columns = models.PositiveIntegerField(null=True, blank=True)
    number_of_frames = models.PositiveIntegerField(default=1)
    size = models.PositiveBigIntegerField()
    sha256 = models.CharField(max_length=64)
    # Where and how the encrypted object is stored (apps.imaging.objectstore.StoredObject).
    storage_key = models.CharField(max_length=80, unique=True)
    cipher = models.CharField(max_length=16)
    wrapped_data_key = models.BinaryField()
    segment_size = models.PositiveIntegerField()
    stored_size = models.PositiveBigIntegerField()
    # The DICOM JSON header (PS3.18 F.2) without bulk data, sealed: it names the patient.
    metadata_sealed = models.BinaryField()
    # Where the Pixel Data value starts in the object and, when native, its length, recorded at ingest so
    # that a frame read needs no walk of the element headers (apps.imaging.pixels). Null for rows stored
    # before it was recorded and for the rare encodings whose frames are read by walking the headers.
    pixel_data_offset = models.PositiveBigIntegerField(null=True, blank=True)
    pixel_data_length = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = _("instance")
        verbose_name_plural = _("instances")
        constraints = [models.UniqueConstraint(fields=["hospital", "sop_instance_uid"], name="instance_unique_uid")]
        indexes = [models.Index(fields=["hospital", "series", "instance_number"])]

    def __str__(self) -> str:
        return self.sop_instance_uid
