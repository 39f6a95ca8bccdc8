"""The hospital systems' endpoint for exam-slip QR codes: POST a study, get a new entry link."""

import base64
from typing import Any, ClassVar

from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.translation import gettext as _
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging.keys import blind_index
from apps.imaging.models import Patient, Study
from apps.portal.models import EntryToken
from apps.portal.policy import policy_for
from apps.portal.qr import qr_png, qr_svg
from apps.portal.services import entry_token_create, entry_token_expires_on, entry_token_url, patient_contact_update
from apps.tenants.access import get_for_hospital_or_404
from apps.tenants.api import HospitalAPIView


class StudyEntryTokenView(HospitalAPIView):
    """``POST /api/<code>/portal/studies/<StudyInstanceUID>/entry-token``: a new opaque QR token
    for the study (shown once), its URL, the QR as SVG and base64 PNG, and ``expires_on``, the
    last day the token works (ISO date; the end of the study's service period)."""

    required_scopes: ClassVar[dict[str, str]] = {"POST": "write"}

    def post(self, request: Request, hospital_code: str, study_uid: str, **kwargs: Any) -> Response:
        study = get_for_hospital_or_404(Study.objects.all(), self.hospital, study_instance_uid=study_uid)
        entry, raw = entry_token_create(actor=None, hospital=self.hospital, study=study, kind=EntryToken.Kind.QR)
        url = entry_token_url(self.hospital, entry, raw)
        audit_record(
            action=Action.PATIENT_RECORD_VIEWED, request=request._request, hospital=self.hospital,
            actor_name=self.token.actor_name, entry_point=EntryPoint.API, object_type="study",
            object_id=str(study.public_id), details={"qr_token": str(entry.public_id)},
        )  # fmt: skip
        return Response(
            {
                "token_id": str(entry.public_id),
                "study": str(study.public_id),
                "url": url,
                "expires_on": entry_token_expires_on(entry, policy_for(self.hospital)).isoformat(),
                "qr_svg": qr_svg(url),
                "qr_png_base64": base64.b64encode(qr_png(url)).decode(),
                "docs": reverse("portal:index"),
            },
            status=status.HTTP_201_CREATED,
        )


class PatientContactView(HospitalAPIView):
    """``POST /api/<code>/portal/patients/contact`` with ``{"patient_id": MRN, "phone": ...,
    "id_number": ...}``: the phone number and ID-card number the hospital's registration system
    holds for a patient, which the portal's sign-in checks. Stored sealed; 404 for an unknown MRN."""

    required_scopes: ClassVar[dict[str, str]] = {"POST": "write"}

    def post(self, request: Request, hospital_code: str, **kwargs: Any) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        mrn, phone, id_number = (str(data.get(key) or "").strip() for key in ("patient_id", "phone", "id_number"))
        if not mrn or not (phone or id_number) or len(phone) > 20 or len(id_number) > 32:
            return Response(
                {"error": "invalid", "detail": _("Give patient_id and a phone and/or id_number.")},
                status=status.HTTP_400_BAD_REQUEST,
            )
        patient = get_for_hospital_or_404(
            Patient.objects.all(), self.hospital, mrn_index=blind_index(self.hospital, mrn, field="mrn")
        )
        try:
            patient_contact_update(
                actor=None, hospital=self.hospital, patient=patient, phone=phone, id_number=id_number
            )
        except ValidationError as error:
            return Response({"error": "invalid", "detail": error.messages}, status=status.HTTP_400_BAD_REQUEST)
        audit_record(
            action=Action.PATIENT_RECORD_CHANGED,
            request=request._request,
            hospital=self.hospital,
            actor_name=self.token.actor_name,
            entry_point=EntryPoint.API,
            object_type="patient",
            object_id=str(patient.public_id),
            details={"operation": "contact_update", "phone": bool(phone), "id_number": bool(id_number)},
        )
        return Response({"patient": str(patient.public_id)})
