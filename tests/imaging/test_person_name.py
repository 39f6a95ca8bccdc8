"""Person names as staff and patients read them, not as DICOM stores them."""

import pytest

from apps.imaging.selectors import PatientIdentity, person_name_display


@pytest.mark.parametrize(
    ("stored", "shown"),
    [
        ("Zhang^San", "Zhang San"),
        ("Zhang^San^^Dr", "Zhang San Dr"),
        ("Zhang^San=张^三=zhang^san", "张三"),
        ("张^三", "张三"),
        ("张三", "张三"),
        ("=张^三", "张三"),
        ("Zhang^San=", "Zhang San"),
        ("^", ""),
        ("", ""),
        ("O'Brien^Mary Ann", "O'Brien Mary Ann"),
    ],
)
def test_person_names_are_shown_as_people_write_them(stored, shown):
    assert person_name_display(stored) == shown


def test_the_identity_keeps_the_dicom_form_for_query_answers():
    identity = PatientIdentity(patient_id="P1", name="Zhang^San=张^三", birth_date="19800101", sex="M")
    assert identity.name == "Zhang^San=张^三"  # what QIDO-RS returns
    assert identity.display_name == "张三"
