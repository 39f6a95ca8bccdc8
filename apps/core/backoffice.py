"""The back office at ``/admin/``: Django's admin, with access decided by our roles.

Django's superuser flag and model permissions are not used. Each admin class states who may see
it through the mixins below:

- hospital admins work inside one hospital (the one chosen last, or their only one), with the
  hospital active in the database session so row-level security backs up every query;
- each platform duty sees only its own screens (system admin: hospitals; security admin: users
  and roles; audit admin: the audit trail); vendor operators see hospitals' service data only.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Model, QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop, ngettext_lazy

from apps.accounts.models import Membership
from apps.accounts.roles import BACK_OFFICE_DUTIES, HospitalRole, PlatformRole
from apps.accounts.services import platform_roles
from apps.core.decorators import is_fully_signed_in
from apps.tenants.context import activate_hospital, activate_platform_scope
from apps.tenants.models import Hospital

# Strings of Django's admin and forms that Django's own Simplified Chinese catalogue lacks (new in
# Django 6). Naming them here keeps them in this project's catalogue, which comes first.
DJANGO_STRINGS_TRANSLATED_HERE = (
    gettext_noop("- Select an option -"),
    gettext_noop("Filter by %(field_name)s"),
    gettext_noop("No %s matches the given query."),
    ngettext_lazy("…and %(count)d more object.", "…and %(count)d more objects.", "count"),
)

# The one platform duty whose cross-hospital database view a request opens.
_DUTY_SCOPES = {PlatformRole.SECURITY_ADMIN: "security", PlatformRole.AUDIT_ADMIN: "audit"}


def _admin_hospital(request: HttpRequest) -> Hospital | None:
    """The hospital a hospital admin works in: the last one chosen, else the first."""
    hospital_ids = list(
        Membership.objects.filter(user_id=request.user.pk or 0, role=HospitalRole.HOSPITAL_ADMIN)
        .order_by("hospital__code")
        .values_list("hospital_id", flat=True)
    )
    if not hospital_ids:
        return None
    hospitals = {h.pk: h for h in Hospital.objects.filter(pk__in=hospital_ids, status=Hospital.Status.ACTIVE)}
    chosen = request.session.get("hospital_code")
    for hospital in hospitals.values():
        if hospital.code == chosen:
            return hospital
    return hospitals.get(hospital_ids[0])


class BackOfficeSite(admin.AdminSite):
    site_header = _("Imaging Cloud back office")
    site_title = _("Imaging Cloud")
    index_title = _("Back office")
    enable_nav_sidebar = False

    def has_permission(self, request: HttpRequest) -> bool:
        if not is_fully_signed_in(request):
            return False
        return bool(getattr(request, "platform_roles", set())) or getattr(request, "hospital", None) is not None

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        inner = super().admin_view(view, cacheable)

        def scoped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            request.platform_roles = set()  # type: ignore[attr-defined]
            if is_fully_signed_in(request):
                roles = platform_roles(request.user)
                request.platform_roles = roles & BACK_OFFICE_DUTIES  # type: ignore[attr-defined]
                for role, scope in _DUTY_SCOPES.items():
                    if role in roles:
                        activate_platform_scope(scope)
                hospital = _admin_hospital(request)
                if hospital is not None:
                    activate_hospital(hospital)
                    request.hospital = hospital  # type: ignore[attr-defined]
                if not self.has_permission(request):
                    raise PermissionDenied
            return inner(request, *args, **kwargs)

        scoped.__wrapped__ = inner  # type: ignore[attr-defined]
        return scoped

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:  # type: ignore[override]
        return redirect(f"{reverse('accounts:login')}?next={reverse('admin:index')}")


class BackOfficeModelAdmin(admin.ModelAdmin):
    """Base of every back-office screen: an object that is absent or not visible is a plain 404,
    the same whether it exists in another hospital or not at all."""

    def _get_obj_does_not_exist_redirect(self, request: HttpRequest, opts: Any, object_id: str) -> HttpResponse:
        raise Http404


def acting_hospital(request: HttpRequest) -> Hospital | None:
    return getattr(request, "hospital", None)


def has_platform_role(request: HttpRequest, *roles: str) -> bool:
    return bool(getattr(request, "platform_roles", set()) & set(roles))


class HospitalScopedFormMixin:
    """Mixed into the form of every hospital-scoped admin screen (``HospitalAdminScopedMixin``).

    The hospital is never a form field (it is the acting hospital), so Django's uniqueness and
    constraint checks, which skip every constraint naming a field the form lacks, would let a
    duplicate through to the database (an IntegrityError, a 500). The form is given the acting
    hospital instead: a new row gets it before validation, and the checks include it.
    """

    acting_hospital: Hospital | None = None
    instance: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.acting_hospital is not None and getattr(self.instance, "hospital_id", None) is None:
            self.instance.hospital = self.acting_hospital

    def _get_validation_exclusions(self) -> set[str]:
        exclude: set[str] = super()._get_validation_exclusions()  # type: ignore[misc]
        if getattr(self.instance, "hospital_id", None) is not None:
            exclude.discard("hospital")
        return exclude


class HospitalAdminScopedMixin:
    """For tenant-owned models managed by hospital admins, inside their hospital only.

    ``platform_roles_allowed`` names platform duties that may also see every hospital's rows.
    """

    platform_roles_allowed: tuple[str, ...] = ()

    def _platform(self, request: HttpRequest) -> bool:
        return has_platform_role(request, *self.platform_roles_allowed)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if self._platform(request):
            return queryset
        hospital = acting_hospital(request)
        if hospital is None:
            return queryset.none()
        return queryset.filter(hospital=hospital)

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)  # type: ignore[misc]
        hospital = acting_hospital(request)
        if hospital is None or not issubclass(form, forms.ModelForm):
            return form
        # Through the form's own metaclass, as modelform_factory does.
        return type(form)(form.__name__, (HospitalScopedFormMixin, form), {"acting_hospital": hospital})

    def has_module_permission(self, request: HttpRequest) -> bool:
        return acting_hospital(request) is not None or self._platform(request)

    def has_view_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return self.has_module_permission(request)
