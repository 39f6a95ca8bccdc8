"""Tell the patient by SMS when a study is published (with a short link) or its report amended."""

import logging
from typing import Any

from apps.imaging.models import Study
from apps.notify.services import message_enqueue
from apps.portal.models import EntryToken
from apps.portal.services import entry_token_create, entry_token_url
from apps.portal.verification import patient_phone
from apps.tenants.context import hospital_context

logger = logging.getLogger(__name__)


def _hospital_name(study: Study) -> str:
    return study.hospital.name_zh[:30]


def on_study_published(sender: Any, *, study: Study, **kwargs: Any) -> None:
    """After commit of a publication: a new SMS short link for the study, sent to the phone on
    the patient's record (none when the record has no phone)."""
    with hospital_context(study.hospital):
        patient = study.patient
        phone = patient_phone(study.hospital, patient)
        if not phone:
            logger.info("study %s published; its patient has no phone on record", study.public_id)
            return
        entry, raw = entry_token_create(actor=None, hospital=study.hospital, study=study, kind=EntryToken.Kind.SMS)
        message_enqueue(
            hospital=study.hospital,
            phone=phone,
            template="study_published",
            params={"hospital": _hospital_name(study), "link": entry_token_url(study.hospital, entry, raw)},
        )


def on_report_amended(sender: Any, *, study: Study, **kwargs: Any) -> None:
    """After commit of an amendment to a published report: a notice (no link, no content)."""
    with hospital_context(study.hospital):
        phone = patient_phone(study.hospital, study.patient)
        if not phone:
            return
        message_enqueue(
            hospital=study.hospital, phone=phone, template="report_amended", params={"hospital": _hospital_name(study)}
        )
