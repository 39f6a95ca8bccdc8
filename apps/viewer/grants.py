"""Who may open a study in the viewer: signed-in staff of its hospital, or a session grant.

Other apps grant access through this contract (the patient portal after a verification code, a
share link): ``viewer_grant_add`` records in the Django session that this browser may open one study
until a time; ``viewer_url`` gives the page to send the browser to. Nothing goes into the URL, so a
copied link opens nothing without the session. A validator registered per mode is asked on every
request, so that, for example, a revoked share stops working at once.
"""

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import Any

from django.db.models import Exists, OuterRef, Value
from django.http import Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone

from apps.imaging.models import Study
from apps.tenants.access import get_for_hospital_or_404
from apps.tenants.context import activate_hospital
from apps.tenants.models import HOSPITAL_CODE_PATTERN, Hospital

SESSION_KEY = "viewer_grants"
MODES = frozenset({"patient", "share"})
DOCTOR = "doctor"

GrantValidator = Callable[[Hospital, dict[str, Any]], bool]
_validators: dict[str, GrantValidator] = {}


def register_grant_validator(mode: str, validator: GrantValidator) -> None:
    """Ask ``validator(hospital, grant)`` on every viewer request using a grant of ``mode``.

    A grant is refused when its validator returns False. The grant dict holds ``hospital`` (code),
    ``study`` (public id), ``mode``, ``expires_at`` (ISO 8601) and ``share`` (public id or None).
    """
    if mode not in MODES:
        raise ValueError(f"Unknown viewer grant mode: {mode}")
    _validators[mode] = validator


def viewer_grant_add(
    request: HttpRequest, *, study: Study, mode: str, expires_at: datetime, share_public_id: str | None = None
) -> None:
    """Let this browser's session open ``study`` in ``mode`` ("patient" or "share") until ``expires_at``."""
    if mode not in MODES:
        raise ValueError(f"Unknown viewer grant mode: {mode}")
    if timezone.is_naive(expires_at):
        raise ValueError("expires_at must be timezone-aware")
    grants = dict(request.session.get(SESSION_KEY, {}))
    grants[str(study.public_id)] = {
        "hospital": study.hospital.code,
        "study": str(study.public_id),
        "mode": mode,
        "expires_at": expires_at.isoformat(),
        "share": str(share_public_id) if share_public_id else None,
    }
    request.session[SESSION_KEY] = grants


def viewer_grants_clear(request: HttpRequest) -> None:
    """Forget every viewer grant of this session (for sign-out)."""
    request.session.pop(SESSION_KEY, None)
    request.session.pop(AUDITED_SERIES_KEY, None)


def viewer_url(study: Study) -> str:
    """The viewer page of ``study``: ``/viewer/<hospital code>/studies/<study public id>/``."""
    return reverse("viewer:study", kwargs={"hospital_code": study.hospital.code, "study_id": str(study.public_id)})


AUDITED_SERIES_KEY = "viewer_audited_series"


@dataclass
class ViewerAccess:
    """What a viewer request may read: one study of one hospital, in one mode.

    The study row is loaded on first use of ``study`` (the page needs it). The data endpoints, called
    hundreds of times per opened stack, do not: they load their series or instance joined on
    ``study_public_id``, which gives the same 404 for a study that is absent or not this hospital's.
    """

    hospital: Hospital
    study_public_id: str
    mode: str  # "doctor", "patient" or "share"
    share_public_id: str | None = None

    @property
    def diagnostic(self) -> bool:
        return self.mode == DOCTOR

    @cached_property
    def study(self) -> Study:
        return get_for_hospital_or_404(Study.objects.all(), self.hospital, public_id=self.study_public_id)


def _grant_valid(hospital: Hospital, grant: Any, study_id: str) -> bool:
    if not isinstance(grant, dict) or grant.get("hospital") != hospital.code or grant.get("study") != study_id:
        return False
    if grant.get("mode") not in MODES:
        return False
    try:
        expires_at = datetime.fromisoformat(str(grant.get("expires_at")))
    except ValueError:
        return False
    if expires_at <= timezone.now():
        return False
    validator = _validators.get(grant["mode"])
    return validator is None or bool(validator(hospital, grant))


def _hospital_by_code_or_404(code: str, *, staff_user: Any | None) -> Hospital:
    """The active hospital of the URL, as ``apps.tenants.access.hospital_by_code_or_404`` finds it (the
    same 404 for unknown and suspended codes), annotated with ``viewer_staff_member``: whether
    ``staff_user`` (None: nobody) has a role there.

    One query instead of two, because the viewer's data endpoints run this for every frame.
    """
    from apps.accounts.models import Membership

    if not HOSPITAL_CODE_PATTERN.fullmatch(code):
        raise Http404
    memberships = Membership.objects.filter(hospital=OuterRef("pk"), user=staff_user) if staff_user else None
    hospital = (
        Hospital.objects.filter(code=code, status=Hospital.Status.ACTIVE)
        .annotate(viewer_staff_member=Exists(memberships) if memberships is not None else Value(False))
        .first()
    )
    if hospital is None:
        raise Http404
    return hospital


def viewer_access_resolve(request: HttpRequest, hospital_code: str, study_id: str) -> ViewerAccess:
    """The access rule of every viewer request; raises Http404 when there is none.

    Staff fully signed in (second factor included) with a role at the hospital read in doctor
    mode; otherwise an unexpired, still valid session grant for exactly this study opens it in
    patient or share mode. Anything else is the same 404 as an absent study. On success the
    hospital is active for the rest of the request's transaction (row-level security). Whether the
    study exists is checked where it is read (``ViewerAccess.study``, or the data endpoints' joins),
    so an absent study is a 404 as well.
    """
    from apps.core.decorators import is_fully_signed_in

    try:
        study_id = str(uuid.UUID(study_id))
    except ValueError as error:
        raise Http404 from error
    staff = is_fully_signed_in(request)
    hospital = _hospital_by_code_or_404(hospital_code, staff_user=request.user if staff else None)
    mode: str | None = None
    grant: dict[str, Any] | None = None
    if staff and hospital.viewer_staff_member:  # type: ignore[attr-defined]
        mode = DOCTOR
    else:
        candidate = request.session.get(SESSION_KEY, {}).get(study_id)
        if _grant_valid(hospital, candidate, study_id):
            grant = candidate
            mode = str(candidate["mode"])
    if mode is None:
        raise Http404
    activate_hospital(hospital)
    request.hospital = hospital  # type: ignore[attr-defined]
    return ViewerAccess(hospital, study_id, mode, grant.get("share") if grant else None)
