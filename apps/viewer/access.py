"""Auditing viewer access, and the page's Content-Security-Policy."""

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.csp import CSP

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging.models import Series
from apps.viewer.grants import AUDITED_SERIES_KEY, ViewerAccess


def _entry_point(access: ViewerAccess) -> EntryPoint:
    return EntryPoint.WEB if access.diagnostic else EntryPoint.PORTAL


def _details(access: ViewerAccess, **extra: Any) -> dict[str, Any]:
    details: dict[str, Any] = {"mode": access.mode, **extra}
    if access.share_public_id:
        details["share"] = access.share_public_id
    return details


def study_open_audit(request: HttpRequest, access: ViewerAccess) -> None:
    """One STUDY_OPENED event per opening of the viewer page."""
    audit_record(
        action=Action.STUDY_OPENED, request=request, hospital=access.hospital, entry_point=_entry_point(access),
        object_type="study", object_id=str(access.study.public_id), details=_details(access),
    )  # fmt: skip


def instances_access_audit(request: HttpRequest, access: ViewerAccess, series: Series, count: int) -> None:
    """One INSTANCES_ACCESSED event per series and session, however many frames are fetched.

    The session remembers which series were recorded, so the frame requests of a stack (hundreds)
    write one event, not one each.
    """
    key = f"{access.study_public_id}/{series.public_id}"
    audited = request.session.get(AUDITED_SERIES_KEY, [])
    if key in audited:
        return
    audit_record(
        action=Action.INSTANCES_ACCESSED, request=request, hospital=access.hospital,
        entry_point=_entry_point(access), object_type="study", object_id=access.study_public_id,
        details=_details(access, series=str(series.public_id), instances=count, retrieve="viewer"),
    )  # fmt: skip
    request.session[AUDITED_SERIES_KEY] = [*audited, key]


def viewer_csp() -> dict[str, list[str]]:
    """The site's policy, relaxed for the viewer page only: the image decoders are WebAssembly
    running in module workers, Cornerstone draws through blob: and data: URLs, and it styles its
    SVG annotations (scale bar, measurement labels) with style attributes. Only attributes:
    ``style-src-attr``; style elements and sheets stay 'self'."""
    site_policy: dict[str, Any] = dict(settings.SECURE_CSP)
    policy = {directive: list(values) for directive, values in site_policy.items()}
    policy["script-src"] = [*policy.get("script-src", [CSP.SELF]), CSP.WASM_UNSAFE_EVAL]
    policy["worker-src"] = [CSP.SELF, "blob:"]
    policy["img-src"] = [*policy.get("img-src", [CSP.SELF]), "blob:"]
    policy["connect-src"] = [CSP.SELF, "blob:", "data:"]
    policy["style-src-attr"] = [CSP.UNSAFE_INLINE]
    return policy


def decode_worker_csp() -> dict[str, list[str]]:
    """The policy of the decoder workers: the codecs are WebAssembly built with Emscripten, whose
    bindings create functions at run time. A worker has no DOM, so allowing eval there, and only
    there, keeps the page's own policy strict."""
    return {
        "default-src": [CSP.NONE],
        "script-src": [CSP.SELF, CSP.UNSAFE_EVAL, CSP.WASM_UNSAFE_EVAL],
        "connect-src": [CSP.SELF],
    }
