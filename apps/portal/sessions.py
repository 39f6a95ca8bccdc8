"""Patient sessions: short-lived, bound to one patient at one hospital.

Kept in Django's server-side session under one key; nothing is written to browser storage.
"""

import time

from django.conf import settings
from django.http import HttpRequest

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging.models import Patient
from apps.tenants.models import Hospital
from apps.viewer.grants import viewer_grants_clear

SESSION_KEY = "portal_patient"


def portal_session_start(*, request: HttpRequest, hospital: Hospital, patient: Patient, entry_point: str) -> None:
    """Sign the patient in (after a verified code): a new session key, earlier grants dropped."""
    viewer_grants_clear(request)
    request.session.cycle_key()
    request.session[SESSION_KEY] = {
        "hospital": str(hospital.public_id),
        "patient": str(patient.public_id),
        "expires": int(time.time()) + settings.PORTAL_SESSION_SECONDS,
    }
    audit_record(
        action=Action.PATIENT_LOGIN,
        request=request,
        hospital=hospital,
        actor_name=f"patient:{patient.public_id}",
        actor_role="patient",
        entry_point=EntryPoint.PORTAL,
        object_type="patient",
        object_id=str(patient.public_id),
        details={"entry": entry_point},
    )


def portal_session_patient(request: HttpRequest, hospital: Hospital) -> Patient | None:
    """The signed-in patient of ``hospital``, or None (no session, another hospital, expired)."""
    data = request.session.get(SESSION_KEY)
    if not isinstance(data, dict) or data.get("hospital") != str(hospital.public_id):
        return None
    if int(data.get("expires", 0)) <= time.time():
        return None
    patient_id = data.get("patient")
    if not isinstance(patient_id, str):
        return None
    return Patient.objects.for_hospital(hospital).filter(public_id=patient_id).first()


def portal_session_end(*, request: HttpRequest, hospital: Hospital) -> None:
    """Sign out: viewer grants cleared, the session flushed, audited."""
    patient = portal_session_patient(request, hospital)
    viewer_grants_clear(request)
    request.session.flush()
    if patient is not None:
        audit_record(
            action=Action.PATIENT_LOGOUT,
            request=request,
            hospital=hospital,
            actor_name=f"patient:{patient.public_id}",
            actor_role="patient",
            entry_point=EntryPoint.PORTAL,
            object_type="patient",
            object_id=str(patient.public_id),
        )
