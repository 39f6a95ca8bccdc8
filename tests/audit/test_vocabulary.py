"""The audit vocabulary: every action maps to a DICOM PS3.15 A.5 event for an ATNA export."""

from apps.audit.vocabulary import DICOM_EVENTS, Action


def test_every_action_has_a_dicom_event():
    assert [action for action in Action if action not in DICOM_EVENTS] == []


def test_a_refused_patient_entry_is_a_failed_login_attempt():
    event = DICOM_EVENTS[Action.PATIENT_ENTRY_REFUSED]
    assert (event.event_id, event.event_type, event.action_code) == ("110114", "110122", "E")
