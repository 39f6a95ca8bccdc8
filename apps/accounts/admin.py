"""Staff management in the back office.

Hospital admins create staff and grant or revoke roles at their own hospital. The security admin
manages accounts, platform roles and every hospital's roles. Every role change goes through the
services, which write the audit events.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from apps.accounts import services
from apps.accounts.models import Membership, PlatformRoleGrant, User
from apps.accounts.roles import SEPARATED_DUTIES, HospitalRole, PlatformRole
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.backoffice import BackOfficeModelAdmin, acting_hospital, has_platform_role


class UserCreationForm(forms.ModelForm):
    password1 = forms.CharField(label=_("Password"), strip=False, widget=forms.PasswordInput)
    password2 = forms.CharField(label=_("Password again"), strip=False, widget=forms.PasswordInput)

    class Meta:
        model = User
        fields = ["username", "display_name", "email"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        first, second = cleaned.get("password1"), cleaned.get("password2")
        if first and second and first != second:
            raise ValidationError(_("The two passwords differ."))
        if first:
            candidate = User(username=cleaned.get("username", ""), display_name=cleaned.get("display_name", ""))
            password_validation.validate_password(first, candidate)
        return cleaned

    def save(self, commit: bool = True) -> User:
        user = super().save(commit=False)
        user.set_password(self.cleaned_data["password1"])
        if commit:
            user.save()
        return user


class MembershipFormSet(forms.BaseInlineFormSet):
    """The roles of the user being saved. A hospital admin creating an account must give it a role
    at their hospital: an account without one would not be theirs to see or manage afterwards
    (staff lists are by role), yet would exist."""

    require_role_at: Any = None  # the acting hospital, when a hospital admin adds a user

    def clean(self) -> None:
        super().clean()
        if self.require_role_at is None:
            return
        granted = [
            form
            for form in self.forms
            if getattr(form, "cleaned_data", None)
            and form.cleaned_data.get("role")
            and not form.cleaned_data.get("DELETE")
        ]
        if not granted:
            raise ValidationError(
                _(
                    "Give the new account at least one role at %(hospital)s; without one it would not "
                    "appear in your staff list."
                ),
                code="role_required",
                params={"hospital": self.require_role_at},
            )


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipFormSet
    extra = 1
    fields = ["hospital", "role"]

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        if obj is None and not has_platform_role(request, PlatformRole.SECURITY_ADMIN):
            formset.require_role_at = acting_hospital(request)  # type: ignore[attr-defined]
        return formset

    def get_queryset(self, request: HttpRequest) -> QuerySet[Membership]:
        queryset = super().get_queryset(request).select_related("hospital")
        if has_platform_role(request, PlatformRole.SECURITY_ADMIN):
            return queryset
        hospital = acting_hospital(request)
        return queryset.filter(hospital=hospital) if hospital else queryset.none()

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A hospital admin's grants always go to the hospital they are working in.
        return [] if has_platform_role(request, PlatformRole.SECURITY_ADMIN) else ["hospital"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return True


class PlatformRoleFormSet(forms.BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        duties = [
            form.cleaned_data.get("role")
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]
        if len([role for role in duties if role in SEPARATED_DUTIES]) > 1:
            raise ValidationError(_("An account may hold only one of system, security and audit administrator."))


class PlatformRoleInline(admin.TabularInline):
    model = PlatformRoleGrant
    formset = PlatformRoleFormSet
    extra = 1
    fields = ["role"]

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_platform_role(request, PlatformRole.SECURITY_ADMIN)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_view_permission(request)


@admin.register(User)
class UserAdmin(BackOfficeModelAdmin):
    list_display = ["username", "display_name", "is_active", "locked_until"]
    search_fields = ["username", "display_name"]
    fields = ["username", "display_name", "email", "is_active", "locked_until"]

    def _security(self, request: HttpRequest) -> bool:
        return has_platform_role(request, PlatformRole.SECURITY_ADMIN)

    def get_queryset(self, request: HttpRequest) -> QuerySet[User]:
        queryset = super().get_queryset(request)
        if self._security(request):
            return queryset
        hospital = acting_hospital(request)
        if hospital is None:
            return queryset.none()
        return queryset.filter(memberships__hospital=hospital).distinct()

    def get_form(self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            kwargs["form"] = UserCreationForm
            kwargs["fields"] = ["username", "display_name", "email", "password1", "password2"]
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ["username", "display_name", "email", "password1", "password2"]
        return self.fields

    def get_inlines(self, request: HttpRequest, obj: Any) -> list[Any]:
        inlines: list[Any] = [MembershipInline]
        if self._security(request):
            inlines.append(PlatformRoleInline)
        return inlines

    def has_module_permission(self, request: HttpRequest) -> bool:
        return acting_hospital(request) is not None or self._security(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return self.has_module_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Hospital admins change only accounts their hospital owns and that hold no platform
        duty; anyone else's account (a colleague shared with another hospital, the security
        admin) they can see but not change."""
        if self._security(request):
            return True
        hospital = acting_hospital(request)
        if hospital is None:
            return False
        if obj is None:
            return True
        return obj.home_hospital_id == hospital.pk and not obj.platform_roles.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # Accounts are deactivated, never deleted: the audit trail refers to them.

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        if not change and not self._security(request):
            obj.home_hospital = acting_hospital(request)
        super().save_model(request, obj, form, change)
        if not change:
            audit_record(
                action=Action.USER_CHANGED, request=request, hospital=acting_hospital(request),
                entry_point=EntryPoint.ADMIN, object_type="user", object_id=str(obj.public_id),
                details={"created": True},
            )  # fmt: skip
        elif form.changed_data:
            audit_record(
                action=Action.USER_CHANGED,
                request=request,
                hospital=acting_hospital(request),
                entry_point=EntryPoint.ADMIN,
                object_type="user",
                object_id=str(obj.public_id),
                details={"fields": sorted(form.changed_data)},
            )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """Role grants and revocations go through the services, which audit them."""
        user: User = form.instance
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        with transaction.atomic():
            for inline_form in formset.forms:
                data = getattr(inline_form, "cleaned_data", None) or {}
                instance, deleting = inline_form.instance, bool(data.get("DELETE"))
                if deleting and instance.pk:
                    if formset.model is Membership:
                        services.membership_revoke(actor=request.user, membership=instance, request=request)
                    else:
                        services.platform_role_revoke(actor=request.user, grant=instance, request=request)
                    formset.deleted_objects.append(instance)
                elif not deleting and not instance.pk and data.get("role"):
                    created = self._grant(request, user, formset.model, data)
                    if created is not None:
                        formset.new_objects.append(created)

    def _grant(self, request: HttpRequest, user: User, model: Any, data: dict[str, Any]) -> Any:
        if model is PlatformRoleGrant:
            return services.platform_role_grant(
                actor=request.user, user=user, role=PlatformRole(data["role"]), request=request
            )
        hospital = data.get("hospital") if self._security(request) else acting_hospital(request)
        if hospital is None:
            return None
        return services.membership_grant(
            actor=request.user, hospital=hospital, user=user, role=HospitalRole(data["role"]), request=request
        )
