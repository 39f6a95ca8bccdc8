"""Demo data for the portal: one patient with a phone and ID number on record and a published
study with a signed report, so the portal can be tried with the console SMS provider."""

from datetime import date
from typing import Any

from django.db import transaction

from apps.imaging.keys import blind_index, field_seal
from apps.imaging.models import Patient, Study
from apps.portal.services import patient_contact_update
from apps.tenants.models import Hospital

DEMO_PHONE = "13800000000"
DEMO_ID_NUMBER = "110101199001011234"
DEMO_MRN = "DEMO-P0001"
DEMO_STUDY_UID = "1.2.826.0.1.3680043.10.1404.1.1"


def _demo_slices(hospital: Hospital, count: int = 8, size: int = 128) -> list[bytes]:
    """Synthetic axial CT slices of a made-up patient: a water disc with a denser ring and a small
    'nodule' that moves through the stack. Never real data."""
    import io

    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    series_uid = generate_uid(prefix="1.2.826.0.1.3680043.10.1404.2.")
    y, x = np.mgrid[0:size, 0:size]
    radius = np.hypot(x - size / 2, y - size / 2)
    slices = []
    for index in range(count):
        hu = np.full((size, size), -1000.0)
        hu[radius < size * 0.42] = 0.0
        hu[(radius >= size * 0.38) & (radius < size * 0.42)] = 400.0
        nodule = np.hypot(x - size * 0.62, y - size * (0.4 + index * 0.02)) < size * 0.05
        hu[nodule] = 60.0
        ds = Dataset()
        ds.SpecificCharacterSet = "ISO_IR 192"
        ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
        ds.SOPInstanceUID = generate_uid(prefix="1.2.826.0.1.3680043.10.1404.3.")
        ds.StudyInstanceUID, ds.SeriesInstanceUID = DEMO_STUDY_UID, series_uid
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", 1, index + 1
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Zhang^Yanshi", DEMO_MRN, "19900101", "M"
        ds.StudyDate = ds.SeriesDate = date.today().strftime("%Y%m%d")
        ds.StudyTime, ds.AccessionNumber, ds.StudyID = "090000", "DEMO0001", "1"
        ds.StudyDescription, ds.ReferringPhysicianName = "CHEST CT", ""
        ds.Manufacturer, ds.StationName, ds.InstitutionName = "SYNTHETIC", "DEMO01", hospital.institution_name
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.BodyPartExamined = "CHEST"
        ds.Rows = ds.Columns = size
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 12, 11, 0
        ds.PixelSpacing, ds.SliceThickness = [2.5, 2.5], 5.0
        ds.ImagePositionPatient = [-160.0, -160.0, float(index * 5)]
        ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        ds.SliceLocation = float(index * 5)
        ds.RescaleIntercept, ds.RescaleSlope, ds.KVP = -1024, 1, 120
        ds.WindowCenter, ds.WindowWidth = 40, 400
        ds.PixelData = (hu + 1024).clip(0, 4095).astype("<u2").tobytes()
        ds["PixelData"].VR = "OW"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        slices.append(buffer.getvalue())
    return slices


def _demo_images_ingest(hospital: Hospital) -> None:
    from apps.imaging.ingest import staged_object_create, staged_object_process
    from apps.imaging.models import StagedObject

    for part in _demo_slices(hospital):
        staged = staged_object_create(hospital=hospital, source=StagedObject.Source.UPLOAD, chunks=[part])
        staged_object_process(staged=staged)


def demo_patient_seed(*, hospital: Hospital, doctor: Any) -> Patient:
    """Create (once) the demo patient and a published chest CT with a signed report. Call inside
    the hospital's context; ``doctor`` is a reporting doctor of that hospital."""
    from apps.reports.models import Report, StudyPublication
    from apps.reports.publication import study_images_mark_complete
    from apps.reports.services import report_create, report_sign

    mrn_index = blind_index(hospital, DEMO_MRN, field="mrn")
    if not Study.objects.for_hospital(hospital).filter(study_instance_uid=DEMO_STUDY_UID).exists():
        _demo_images_ingest(hospital)
    with transaction.atomic():
        patient = Patient.objects.for_hospital(hospital).filter(mrn_index=mrn_index).first()
        if patient is None:
            patient = Patient.objects.create(
                hospital=hospital,
                mrn_sealed=field_seal(hospital, DEMO_MRN, field="mrn"),
                mrn_index=mrn_index,
                name_sealed=field_seal(hospital, "张演示", field="name"),
                name_index=blind_index(hospital, "张演示", field="name"),
                birth_date_sealed=field_seal(hospital, "1990-01-01", field="birth"),
                sex="M",
            )
        patient_contact_update(
            actor=None, hospital=hospital, patient=patient, phone=DEMO_PHONE, id_number=DEMO_ID_NUMBER
        )
        study, created = Study.objects.get_or_create(
            hospital=hospital,
            study_instance_uid=DEMO_STUDY_UID,
            defaults={
                "patient": patient,
                "accession_number": "DEMO0001",
                "modalities": "CT",
                "study_date": date.today(),
                "description": "胸部CT平扫",
            },
        )
        if created or not Report.objects.filter(hospital=hospital, study=study).exists():
            version = report_create(
                hospital=hospital,
                study=study,
                actor=doctor,
                fields={
                    "exam_description": "胸部CT平扫",
                    "technique": "螺旋CT，层厚5mm",
                    "findings": "双肺纹理清晰，未见明确结节及实变影。纵隔居中。",
                    "impression": "胸部CT平扫未见明显异常。",
                    "recommendation": "",
                },
            )
            report_sign(report=version.report, actor=doctor, expected_version=1)
        study_images_mark_complete(actor=None, study=study, source=StudyPublication.Source.MANIFEST)
    return patient
