"""Seeding studies for the viewer tests through the real STOW-RS pipeline, and granting access."""

from datetime import datetime, timedelta

import numpy as np
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory
from django.utils import timezone
from pydicom.uid import generate_uid

from apps.imaging.models import Study
from apps.tenants.context import hospital_context
from apps.viewer.grants import viewer_grant_add
from tests.dicomweb.helpers import stow, token_for
from tests.imaging.dicom_factory import make_instance, to_part10_bytes

PIXEL_SPACING = 0.7
RESCALE_INTERCEPT = -1024.0
WINDOW = (40.0, 400.0)


def ct_gradient(rows: int, columns: int, index: int) -> np.ndarray:
    """Stored values of slice `index`: 3 per column, 2 per row, 10 per slice, from 100."""
    return (np.add.outer(np.arange(rows) * 2, np.arange(columns) * 3) + index * 10 + 100).astype(np.uint16)


def ct_series_parts(count: int, *, rows: int = 64, columns: int = 64, study_uid: str | None = None,
                    **attributes: object) -> list[bytes]:  # fmt: skip
    """`count` contiguous axial CT slices of one series, each a known gradient (see ct_gradient)."""
    shared = {
        "StudyInstanceUID": study_uid or generate_uid(),
        "SeriesInstanceUID": generate_uid(),
        "Rows": rows,
        "Columns": columns,
        "PixelSpacing": [PIXEL_SPACING, PIXEL_SPACING],
        "SliceThickness": 1.0,
        "RescaleIntercept": RESCALE_INTERCEPT,
        "RescaleSlope": 1.0,
        "WindowCenter": WINDOW[0],
        "WindowWidth": WINDOW[1],
        "BitsStored": 16,
        "HighBit": 15,
        "PixelRepresentation": 0,
        **attributes,
    }
    return [
        to_part10_bytes(
            make_instance(
                "CT",
                InstanceNumber=index + 1,
                ImagePositionPatient=[-20.0, -20.0, float(index)],
                SliceLocation=float(index),
                PixelData=ct_gradient(rows, columns, index).astype("<u2").tobytes(),
                **shared,
            )
        )
        for index in range(count)
    ]


def study_store(hospital, parts: list[bytes]) -> Study:
    """STOW `parts` (one study) into `hospital` and return the indexed Study."""
    response = stow(Client(), hospital.code, token_for(hospital), parts)
    assert response.status_code == 200, response.content
    with hospital_context(hospital):
        return Study.objects.filter(hospital=hospital).order_by("-created_at").select_related("hospital")[0]


def grant_session(client: Client, study: Study, *, mode: str = "patient", expires_at: datetime | None = None,
                  share_public_id: str | None = None) -> str:  # fmt: skip
    """Give the client's session a viewer grant for `study` (as the portal would); returns the session key."""
    session = client.session
    request = RequestFactory().get("/")
    request.session = session
    viewer_grant_add(
        request, study=study, mode=mode, expires_at=expires_at or timezone.now() + timedelta(minutes=30),
        share_public_id=share_public_id,
    )  # fmt: skip
    session.save()
    return str(session.session_key)


def grants_revoke(session_key: str) -> None:
    """End every viewer grant of a session on the server side, as expiry or sign-out would."""
    session = SessionStore(session_key=session_key)
    session.pop("viewer_grants", None)
    session.save()
