"""manage.py backfill_pixel_offsets: the Pixel Data position of instances stored before it was recorded."""

import io

import pytest
from django.core.management import CommandError, call_command
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGLosslessSV1,
)

from apps.imaging.ingest import staged_object_create, staged_object_process
from apps.imaging.models import Instance, StagedObject
from apps.tenants.context import hospital_context
from tests.imaging.dicom_factory import make_ct_slice, make_us_image

pytestmark = pytest.mark.django_db

PATIENT_NAME = "Buchong^Pianyi"
PATIENT_ID = "P-BACKFILL"
SECOND_INSTITUTION = "SECOND PEOPLES HOSPITAL"


def _ingest(hospital, blobs: list[bytes]) -> None:
    with hospital_context(hospital):
        for blob in blobs:
            staged = staged_object_create(hospital=hospital, source="upload", chunks=[blob])
            assert staged_object_process(staged=staged).status == StagedObject.Status.STORED


def _recorded(hospital) -> dict[str, tuple[int | None, int | None]]:
    with hospital_context(hospital):
        return {
            sop: (offset, length)
            for sop, offset, length in Instance.objects.values_list(
                "sop_instance_uid", "pixel_data_offset", "pixel_data_length"
            )
        }


def _clear(hospital) -> None:
    with hospital_context(hospital):
        Instance.objects.update(pixel_data_offset=None, pixel_data_length=None)


@pytest.fixture
def stored(world, local_storage, settings, tmp_path):
    """Instances of both hospitals in several encodings, as ingest recorded them, then cleared."""
    settings.STAGING_DIR = tmp_path / "staging"
    settings.STORAGE_SEGMENT_SIZE = 4096  # headers and Pixel Data across several segments
    patient = {"PatientName": PATIENT_NAME, "PatientID": PATIENT_ID}
    _ingest(
        world.first.hospital,
        [
            make_ct_slice(**patient),
            make_ct_slice(transfer_syntax=ImplicitVRLittleEndian, **patient),
            make_ct_slice(NumberOfFrames=3, **patient),
            make_ct_slice(transfer_syntax=JPEGLosslessSV1, **patient),
            make_ct_slice(transfer_syntax=ExplicitVRBigEndian, **patient),
            make_ct_slice(transfer_syntax=DeflatedExplicitVRLittleEndian, **patient),
            make_us_image(**patient),
        ],
    )
    _ingest(world.second.hospital, [make_ct_slice(InstitutionName=SECOND_INSTITUTION, **patient)])
    recorded = {code: _recorded(getattr(world, code).hospital) for code in ("first", "second")}
    for code in ("first", "second"):
        _clear(getattr(world, code).hospital)
    return recorded


def test_the_command_records_what_ingest_recorded(world, stored):
    first = stored["first"]
    assert sum(offset is not None for offset, _ in first.values()) == 5  # all but big endian and deflated
    output = io.StringIO()
    call_command("backfill_pixel_offsets", "--batch", "2", stdout=output)
    assert _recorded(world.first.hospital) == first
    assert _recorded(world.second.hospital) == stored["second"]
    assert "first: scanned 5, filled 5, no direct offset 0, failed 0" in output.getvalue()
    assert PATIENT_NAME not in output.getvalue() and PATIENT_ID not in output.getvalue()


def test_a_second_run_changes_nothing(world, stored):
    call_command("backfill_pixel_offsets", stdout=io.StringIO())
    output = io.StringIO()
    call_command("backfill_pixel_offsets", stdout=output)
    assert "first: scanned 0, filled 0" in output.getvalue()
    assert _recorded(world.first.hospital) == stored["first"]


def test_an_interrupted_run_is_resumed(world, stored):
    with hospital_context(world.first.hospital):
        done = Instance.objects.order_by("id").first()
        assert done is not None
        offset, length = stored["first"][done.sop_instance_uid]
        Instance.objects.filter(pk=done.pk).update(pixel_data_offset=offset, pixel_data_length=length)
    output = io.StringIO()
    call_command("backfill_pixel_offsets", "--hospital", "first", stdout=output)
    assert "first: scanned 4, filled 4" in output.getvalue()
    assert _recorded(world.first.hospital) == stored["first"]


def test_one_hospital_only(world, stored):
    output = io.StringIO()
    call_command("backfill_pixel_offsets", "--hospital", "second", stdout=output)
    assert output.getvalue().splitlines() == ["second: scanned 1, filled 1, no direct offset 0, failed 0"]
    assert _recorded(world.second.hospital) == stored["second"]
    assert all(offset is None for offset, _ in _recorded(world.first.hospital).values())


def test_an_unreadable_object_is_reported_by_id_and_the_others_are_filled(world, stored, local_storage):
    with hospital_context(world.first.hospital):
        broken = Instance.objects.exclude(
            transfer_syntax_uid__in=[ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian]
        ).first()
        assert broken is not None
        local_storage.delete(broken.storage_key)
    output = io.StringIO()
    with pytest.raises(CommandError, match="1 instance"):
        call_command("backfill_pixel_offsets", "--hospital", "first", stdout=output)
    assert f"failed: instance {broken.public_id}" in output.getvalue()
    recorded = _recorded(world.first.hospital)
    assert recorded.pop(broken.sop_instance_uid) == (None, None)
    assert recorded == {sop: value for sop, value in stored["first"].items() if sop != broken.sop_instance_uid}


def test_an_unknown_hospital_code_is_an_error(stored):
    with pytest.raises(CommandError, match="No hospital"):
        call_command("backfill_pixel_offsets", "--hospital", "nowhere", stdout=io.StringIO())
