import uuid
from typing import Any, ClassVar

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.validators import UnicodeUsernameValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from apps.accounts.roles import SEPARATED_DUTIES, HospitalRole, PlatformRole
from apps.tenants.models import Hospital, RowLevelSecurity, TenantOwnedModel


class UserManager(BaseUserManager["User"]):
    def create_user(self, username: str, password: str | None = None, **fields: Any) -> "User":
        user = self.model(username=username, **fields)
        user.set_password(password)
        user.save(using=self._db)
        return user


class User(AbstractBaseUser):
    """A staff or platform account. Roles come from memberships and platform role grants,
    never from Django's superuser flag, so no account can silently hold every duty."""

    public_id = models.UUIDField(_("public ID"), default=uuid.uuid4, unique=True, editable=False)
    username = models.CharField(_("username"), max_length=150, unique=True, validators=[UnicodeUsernameValidator()])
    display_name = models.CharField(_("display name"), max_length=100, blank=True)
    email = models.EmailField(_("email"), blank=True)
    is_active = models.BooleanField(_("active"), default=True)
    date_joined = models.DateTimeField(_("date joined"), default=timezone.now)
    failed_login_count = models.PositiveIntegerField(_("failed sign-ins"), default=0, editable=False)
    locked_until = models.DateTimeField(_("locked until"), null=True, blank=True)
    # The hospital whose admin created the account and may change it; none for platform accounts.
    home_hospital = models.ForeignKey(
        Hospital, null=True, blank=True, on_delete=models.PROTECT, related_name="+", verbose_name=_("home hospital")
    )

    objects: ClassVar[UserManager] = UserManager()

    USERNAME_FIELD = "username"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    class Meta:
        ordering = ["username"]
        verbose_name = _("user")
        verbose_name_plural = _("users")

    def __str__(self) -> str:
        return self.display_name or self.username

    # The back office greets the user with the short name ("欢迎，张医生").
    def get_short_name(self) -> str:
        return self.display_name or self.username

    def get_full_name(self) -> str:
        return self.display_name or self.username

    # The admin asks these; permissions here come from roles, checked by each admin class.
    @property
    def is_staff(self) -> bool:
        return self.is_active

    def has_perm(self, perm: str, obj: object = None) -> bool:
        return False

    def has_module_perms(self, app_label: str) -> bool:
        return False

    def is_locked(self, now: Any = None) -> bool:
        return bool(self.locked_until and self.locked_until > (now or timezone.now()))


class Membership(TenantOwnedModel):
    """A user's role at one hospital."""

    # Users read their own memberships before a hospital is chosen; the security admin manages
    # roles across hospitals.
    row_level_security = RowLevelSecurity(
        extra_policies={
            "own_memberships": ("SELECT", "user_id = NULLIF(current_setting('app.user_id', true), '')::bigint"),
            "security_admin_memberships": ("ALL", "current_setting('app.platform_scope', true) = 'security'"),
        }
    )

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="memberships", verbose_name=_("user"))
    role = models.CharField(_("role"), max_length=32, choices=HospitalRole.choices)
    granted_at = models.DateTimeField(_("granted at"), auto_now_add=True)

    class Meta:
        verbose_name = _("membership")
        verbose_name_plural = _("memberships")
        constraints = [models.UniqueConstraint(fields=["hospital", "user", "role"], name="membership_unique_role")]
        indexes = [models.Index(fields=["hospital", "role"])]

    def __str__(self) -> str:
        return f"{self.user} · {self.get_role_display()}"


class PlatformRoleGrant(models.Model):
    """A platform-wide role. The database refuses a second separated duty for one user."""

    user = models.ForeignKey(User, on_delete=models.PROTECT, related_name="platform_roles", verbose_name=_("user"))
    role = models.CharField(_("role"), max_length=32, choices=PlatformRole.choices)
    granted_at = models.DateTimeField(_("granted at"), auto_now_add=True)

    class Meta:
        verbose_name = _("platform role")
        verbose_name_plural = _("platform roles")
        constraints = [
            models.UniqueConstraint(fields=["user", "role"], name="platform_role_unique"),
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(role__in=sorted(SEPARATED_DUTIES)),
                name="platform_role_one_separated_duty",
                violation_error_message=_("An account may hold only one of system, security and audit administrator."),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.get_role_display()}"
