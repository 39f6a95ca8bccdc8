"""Entry points that lead to verification: QR token, SMS short link, WeChat, and a doctor's
share link (access code, then the viewer in share mode)."""

import json
import secrets
from typing import Any

from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.audit.services import audit_record, client_ip
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.portal.forms import AccessCodeForm
from apps.portal.models import EntryToken
from apps.portal.policy import policy_for, service_period_ended
from apps.portal.security import Limit, secrets_equal, throttle_hit, throttle_locked
from apps.portal.services import (
    EntryRefusal,
    entry_token_refusal,
    entry_token_resolve,
    share_is_live,
    share_open,
    share_resolve,
    share_study_visible,
    wechat_patient,
)
from apps.portal.verification import CodeRefused, code_issue_for_patient
from apps.portal.views import CHALLENGE_KEY, WECHAT_OPENID_KEY, challenge_remember, portal_hospital
from apps.portal.wechat import WeChatError, wechat_enabled, wechat_provider
from apps.tenants.access import hospital_by_code_or_404
from apps.tenants.context import activate_hospital, current_hospital
from apps.viewer.grants import viewer_grant_add, viewer_url

WECHAT_STATE_KEY = "portal_wechat_state"
# Guessing tokens: every unknown token counts against the address.
TOKEN_GUESS_LIMIT = Limit("ip-token-guesses", 20, 3600, 3600)


def _address(request: HttpRequest) -> str:
    return client_ip(request) or "unknown"


def _count_unknown_token(request: HttpRequest) -> None:
    """Count an unknown token against the address; the request that locks it is audited (in the
    hospital's chain when the URL named one, else the platform's)."""
    if not throttle_hit(TOKEN_GUESS_LIMIT, _address(request)):
        audit_record(
            action=Action.PATIENT_LOCKED, request=request, hospital=current_hospital(), actor_role="anonymous",
            entry_point=EntryPoint.PORTAL, outcome=Outcome.SERIOUS_FAILURE,
            details={"scope": "address", "reason": "token_guessing"},
        )  # fmt: skip


def _guessing(request: HttpRequest) -> HttpResponse | None:
    """An address that presented too many unknown tokens is refused for a while, even with a
    real token, so tokens cannot be found by trying."""
    if throttle_locked(TOKEN_GUESS_LIMIT.scope, _address(request)):
        return render(
            request,
            "portal/message.html",
            {"message": _("Too many requests. Please wait a while and try again.")},
            status=429,
        )
    return None


# What the holder of a real token is told when it no longer leads to its study: never why the
# study was withdrawn, nothing about the patient; the portal sign-in is offered instead.
ENTRY_REFUSALS: dict[EntryRefusal, tuple[Any, Any, int]] = {
    EntryRefusal.NOT_PUBLISHED: (
        gettext_lazy("Not available online"),
        gettext_lazy(
            "The results of this exam cannot be viewed online at the moment. Please try again later, "
            "or contact the hospital."
        ),
        404,
    ),
    EntryRefusal.SERVICE_PERIOD_ENDED: (
        gettext_lazy("Service period ended"),
        gettext_lazy("The service period of this study has ended; it can no longer be viewed online."),
        410,
    ),
    EntryRefusal.LINK_EXPIRED: (
        gettext_lazy("This link has expired"),
        gettext_lazy(
            "This link is no longer valid. Sign in with the mobile number the hospital has on record to see your exams."
        ),
        410,
    ),
}


def _token_entry(request: HttpRequest, raw: str, hospital_code: str | None, kind: str) -> HttpResponse:
    """The landing page of a QR or SMS token: one button sends a code to the phone on record.
    A token whose study is not published, past its service period or (an SMS link) expired
    shows why it cannot be used, with the sign-in offered instead, and sends nothing."""
    refused = _guessing(request)
    if refused is not None:
        return refused
    hospital_in_url = hospital_by_code_or_404(hospital_code) if hospital_code else None
    try:
        entry = entry_token_resolve(raw=raw, hospital=hospital_in_url, kind=kind)
    except Http404:
        _count_unknown_token(request)
        raise
    hospital = entry.hospital
    activate_hospital(hospital)
    request.hospital = hospital  # type: ignore[attr-defined]
    refusal = entry_token_refusal(request=request, entry=entry)
    if refusal is not None:
        title, message, status = ENTRY_REFUSALS[refusal]
        context = {"hospital": hospital, "title": title, "message": message}
        return render(request, "portal/entry_refused.html", context, status=status)
    error = ""
    if request.method == "POST":
        try:
            challenge = code_issue_for_patient(
                request=request, hospital=hospital, patient=entry.study.patient, study=entry.study,
                entry_point=str(kind), token=raw,
            )  # fmt: skip
        except CodeRefused as refused:
            error = str(refused)
        else:
            challenge_remember(
                request, hospital, str(challenge.public_id), study_id=str(entry.study.public_id), entry=str(kind)
            )
            return redirect("portal:verify", hospital.code)
    return render(request, "portal/entry.html", {"hospital": hospital, "error": error}, status=429 if error else 200)


def qr_entry(request: HttpRequest, hospital_code: str, token: str) -> HttpResponse:
    return _token_entry(request, token, hospital_code, EntryToken.Kind.QR)


def short_link(request: HttpRequest, token: str) -> HttpResponse:
    return _token_entry(request, token, None, EntryToken.Kind.SMS)


def share_entry(request: HttpRequest, hospital_code: str, token: str) -> HttpResponse:
    """The doctor's side of a share: the access code, then the viewer in share mode."""
    refused = _guessing(request)
    if refused is not None:
        return refused
    hospital = portal_hospital(request, hospital_code)
    try:
        share = share_resolve(raw=token, hospital=hospital)
    except Http404:
        _count_unknown_token(request)
        raise
    if not share_study_visible(share):
        # Withdrawn by the hospital: the patient no longer sees it either; as for an unknown link.
        raise Http404
    if not share_is_live(share):
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("This link has expired or was withdrawn by the patient.")},
            status=410,
        )
    if service_period_ended(share.study, policy_for(hospital), timezone.localdate()):
        return render(
            request,
            "portal/message.html",
            {
                "hospital": hospital,
                "message": _("The service period of this study has ended; it can no longer be viewed online."),
            },
            status=410,
        )
    form = AccessCodeForm(request.POST or None)
    error = ""
    if request.method == "POST":
        if not form.is_valid():
            error = _("Enter the access code the patient gave you.")
        else:
            error = share_open(request=request, share=share, access_code=form.cleaned_data["access_code"])
            if not error:
                viewer_grant_add(
                    request,
                    study=share.study,
                    mode="share",
                    expires_at=share.expires_at,
                    share_public_id=str(share.public_id),
                )
                return HttpResponseRedirect(viewer_url(share.study))
    return render(
        request,
        "portal/share_open.html",
        {"hospital": hospital, "form": form, "error": error},
        status=400 if error else 200,
    )


def wechat_start(request: HttpRequest, hospital_code: str) -> HttpResponse:
    """From the official account's menu: off to WeChat's snsapi_base authorisation."""
    hospital = portal_hospital(request, hospital_code)
    if not wechat_enabled():
        raise Http404
    state = secrets.token_urlsafe(16)
    request.session[WECHAT_STATE_KEY] = state
    callback = request.build_absolute_uri(reverse("portal:wechat_callback", args=[hospital.code]))
    return HttpResponseRedirect(wechat_provider().authorize_url(redirect_uri=callback, state=state))


def wechat_callback(request: HttpRequest, hospital_code: str) -> HttpResponse:
    """Back from WeChat: a bound openid gets a code sent to the patient's phone on record; an
    unbound one signs in as usual and is bound after the code is verified."""
    hospital = portal_hospital(request, hospital_code)
    expected = request.session.pop(WECHAT_STATE_KEY, None)
    state, code = request.GET.get("state", ""), request.GET.get("code", "")
    if not wechat_enabled() or not expected or not code or not secrets_equal(str(expected), state):
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("WeChat sign-in did not complete. Please try again.")},
            status=400,
        )
    try:
        openid = wechat_provider().openid_for_code(code)
    except WeChatError:
        return render(
            request,
            "portal/message.html",
            {"hospital": hospital, "message": _("WeChat sign-in did not complete. Please try again.")},
            status=502,
        )
    patient = wechat_patient(hospital=hospital, openid=openid)
    if patient is None:
        request.session[WECHAT_OPENID_KEY] = openid
        return redirect("portal:login", hospital.code)
    try:
        challenge = code_issue_for_patient(
            request=request, hospital=hospital, patient=patient, study=None, entry_point="wechat", token=openid
        )
    except CodeRefused as refused:
        return render(request, "portal/message.html", {"hospital": hospital, "message": str(refused)}, status=429)
    request.session.pop(CHALLENGE_KEY, None)
    challenge_remember(request, hospital, str(challenge.public_id), entry="wechat")
    return redirect("portal:verify", hospital.code)


def manifest(request: HttpRequest) -> HttpResponse:
    """The web app manifest (installable; there is deliberately no service worker)."""
    document: dict[str, Any] = {
        "name": _("Imaging Cloud · My images"),
        "short_name": _("My images"),
        "start_url": reverse("portal:index"),
        "scope": reverse("portal:index"),
        "display": "standalone",
        "background_color": "#f4f6f8",
        "theme_color": "#0b6e6e",
        "lang": "zh-CN",
        "icons": [
            {"src": static("portal/icon-192.png"), "sizes": "192x192", "type": "image/png"},
            {"src": static("portal/icon-512.png"), "sizes": "512x512", "type": "image/png"},
        ],
    }
    return HttpResponse(json.dumps(document, ensure_ascii=False), content_type="application/manifest+json")
