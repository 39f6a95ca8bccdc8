"""Staff sign-in: password, then a TOTP code (enrolment on first use), then the hospital."""

import base64
import io
from typing import Any

import qrcode
import qrcode.image.svg
from django.conf import settings
from django.contrib.auth import login, logout
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts import services
from apps.accounts.forms import PasswordSignInForm, TokenForm
from apps.accounts.models import User
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, Outcome

PENDING_USER_KEY = "pending_sign_in_user"
PENDING_NEXT_KEY = "pending_sign_in_next"


def _safe_next(request: HttpRequest, candidate: str | None) -> str:
    if candidate and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return candidate
    return reverse(settings.LOGIN_REDIRECT_URL)


def _pending_user(request: HttpRequest) -> User | None:
    user_id = request.session.get(PENDING_USER_KEY)
    if not user_id:
        return None
    return User.objects.filter(pk=user_id, is_active=True).first()


def _finish(request: HttpRequest, user: User, device: TOTPDevice | None) -> HttpResponse:
    next_url = request.session.get(PENDING_NEXT_KEY)
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    if device is not None:
        otp_login(request, device)
    services.sign_in_completed(request=request, user=user, second_factor=device is not None)
    return HttpResponseRedirect(_safe_next(request, next_url))


@require_http_methods(["GET", "POST"])
def sign_in(request: HttpRequest) -> HttpResponse:
    form = PasswordSignInForm(request.POST or None)
    error = ""
    if request.method == "POST" and form.is_valid():
        result = services.password_sign_in(
            request=request, username=form.cleaned_data["username"], password=form.cleaned_data["password"]
        )
        if result.user is None:
            error = result.error
        else:
            request.session.cycle_key()
            request.session[PENDING_NEXT_KEY] = _safe_next(request, request.GET.get("next"))
            if not services.second_factor_required(result.user):
                return _finish(request, result.user, None)
            request.session[PENDING_USER_KEY] = result.user.pk
            if services.confirmed_totp_device(result.user) is None:
                return redirect("accounts:otp_enrol")
            return redirect("accounts:otp_verify")
    elif request.method == "POST":
        error = _("Enter your username and password.")
    return render(request, "accounts/sign_in.html", {"form": form, "error": error}, status=400 if error else 200)


@require_http_methods(["GET", "POST"])
def otp_verify(request: HttpRequest) -> HttpResponse:
    user = _pending_user(request)
    if user is None:
        return redirect("accounts:login")
    device = services.confirmed_totp_device(user)
    if device is None:
        return redirect("accounts:otp_enrol")
    form = TokenForm(request.POST or None)
    error = ""
    if request.method == "POST":
        if form.is_valid() and services.second_factor_verify(
            request=request, user=user, device=device, token=form.cleaned_data["token"]
        ):
            request.session.pop(PENDING_USER_KEY, None)
            return _finish(request, user, device)
        if not form.is_valid():
            audit_record(
                action=Action.SECOND_FACTOR_FAILED,
                request=request,
                actor=user,
                hospital=user.home_hospital,
                outcome=Outcome.MINOR_FAILURE,
                details={"reason": "malformed"},
            )
        error = _("The code is not right, or the account is locked for now. Try again with a new code.")
    return render(request, "accounts/otp_verify.html", {"form": form, "error": error}, status=400 if error else 200)


def _qr_data_uri(uri: str) -> str:
    image = qrcode.make(uri, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    buffer = io.BytesIO()
    image.save(buffer)
    return "data:image/svg+xml;base64," + base64.b64encode(buffer.getvalue()).decode()


@require_http_methods(["GET", "POST"])
def otp_enrol(request: HttpRequest) -> HttpResponse:
    """First sign-in with a second factor required: show a new TOTP secret and confirm a code."""
    user = _pending_user(request)
    if user is None:
        return redirect("accounts:login")
    if services.confirmed_totp_device(user) is not None:
        return redirect("accounts:otp_verify")
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    if device is None:
        device = TOTPDevice.objects.create(user=user, name="default", confirmed=False)
    form = TokenForm(request.POST or None)
    error = ""
    if request.method == "POST":
        if form.is_valid() and services.second_factor_verify(
            request=request, user=user, device=device, token=form.cleaned_data["token"]
        ):
            services.totp_device_confirm(request=request, user=user, device=device)
            request.session.pop(PENDING_USER_KEY, None)
            return _finish(request, user, device)
        error = _("The code is not right. Check the time on your phone and try the next code.")
    context: dict[str, Any] = {
        "form": form,
        "error": error,
        "qr_data_uri": _qr_data_uri(device.config_url),
        "secret": base64.b32encode(device.bin_key).decode(),
    }
    return render(request, "accounts/otp_enrol.html", context, status=400 if error else 200)


@require_POST
def sign_out(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        audit_record(action=Action.LOGOUT, request=request, hospital=request.user.home_hospital)  # type: ignore[union-attr]
    logout(request)
    return redirect("accounts:login")
