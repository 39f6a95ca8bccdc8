from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from apps.accounts.roles import PlatformRole
from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.core.backoffice import BackOfficeModelAdmin, HospitalAdminScopedMixin, acting_hospital, has_platform_role
from apps.tenants.models import ApiToken, Hospital
from apps.tenants.services import api_token_issue, api_token_revoke


@admin.register(Hospital)
class HospitalAdmin(BackOfficeModelAdmin):
    """System admins configure hospitals; vendor operators and hospital admins only look."""

    list_display = ["code", "name_zh", "name_en", "institution_name", "status"]
    search_fields = ["code", "name_zh", "name_en"]
    list_filter = ["status"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Hospital]:
        queryset = super().get_queryset(request)
        if has_platform_role(request, PlatformRole.SYSTEM_ADMIN, PlatformRole.VENDOR_OPERATOR):
            return queryset
        hospital = acting_hospital(request)
        return queryset.filter(pk=hospital.pk) if hospital else queryset.none()

    def has_module_permission(self, request: HttpRequest) -> bool:
        return acting_hospital(request) is not None or has_platform_role(
            request, PlatformRole.SYSTEM_ADMIN, PlatformRole.VENDOR_OPERATOR
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return self.has_module_permission(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return has_platform_role(request, PlatformRole.SYSTEM_ADMIN)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return has_platform_role(request, PlatformRole.SYSTEM_ADMIN)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Hospital, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            action=Action.HOSPITAL_CHANGED,
            request=request,
            hospital=obj,
            entry_point=EntryPoint.ADMIN,
            object_type="hospital",
            object_id=str(obj.public_id),
            details={"fields": sorted(form.changed_data), "created": not change},
        )


class ApiTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=gettext_lazy("Scopes"), choices=ApiToken.Scope.choices, widget=forms.CheckboxSelectMultiple
    )

    class Meta:
        model = ApiToken
        fields = ["name", "scopes"]


@admin.register(ApiToken)
class ApiTokenAdmin(HospitalAdminScopedMixin, BackOfficeModelAdmin):
    """Hospital admins issue and revoke their hospital's API tokens. The secret shows once."""

    list_display = ["name", "prefix", "scope_labels", "created_at", "last_used_at", "revoked_at"]
    form = ApiTokenForm
    actions = ["revoke"]

    @admin.display(description=gettext_lazy("scopes"))
    def scope_labels(self, token: ApiToken) -> str:
        labels = dict(ApiToken.Scope.choices)
        return _(", ").join(str(labels.get(scope, scope)) for scope in token.scopes or [])

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return acting_hospital(request) is not None

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ApiToken, form: Any, change: bool) -> None:
        hospital = acting_hospital(request)
        assert hospital is not None
        scopes = [s for s in (obj.scopes or []) if s in ApiToken.Scope.values] or [ApiToken.Scope.READ]
        token, raw = api_token_issue(
            hospital=hospital,
            name=obj.name,
            scopes=scopes,
            actor=request.user,
            entry_point=EntryPoint.ADMIN,
            request=request,
        )
        obj.pk = token.pk
        messages.warning(request, _("Copy this token now; it will not be shown again: %(token)s") % {"token": raw})

    @admin.action(description=gettext_lazy("Revoke the selected tokens"))
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset.select_related("hospital"):
            api_token_revoke(token=token, actor=request.user, request=request)
