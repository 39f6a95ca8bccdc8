"""Demo data: one hospital with a user in every role, and the platform duties. Safe to rerun."""

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.accounts.models import User
from apps.accounts.roles import HospitalRole, PlatformRole
from apps.accounts.services import membership_grant, platform_role_grant
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital
from apps.tenants.services import hospital_create

DEMO_PASSWORD = "Demo-Pass-2026!"
DEMO_HOSPITAL = {
    "code": "demo",
    "name_zh": "影像云示范医院",
    "name_en": "Imaging Cloud Demo Hospital",
    "institution_name": "YINGXIANG DEMO HOSPITAL",
}
HOSPITAL_USERS = {
    "tech": ("王技师", HospitalRole.TECHNOLOGIST),
    "reporter": ("李医生", HospitalRole.REPORTING_DOCTOR),
    "reviewer": ("张主任", HospitalRole.REVIEWING_DOCTOR),
    "clinician": ("赵医生", HospitalRole.CLINICIAN),
    "hadmin": ("陈管理员", HospitalRole.HOSPITAL_ADMIN),
}
PLATFORM_USERS = {
    "qc": ("质控中心", PlatformRole.QC_ADMIN),
    "vendor": ("运维工程师", PlatformRole.VENDOR_OPERATOR),
    "sysadmin": ("系统管理员", PlatformRole.SYSTEM_ADMIN),
    "secadmin": ("安全管理员", PlatformRole.SECURITY_ADMIN),
    "auditadmin": ("审计管理员", PlatformRole.AUDIT_ADMIN),
}


def _user(username: str, display_name: str, home_hospital: Hospital | None = None) -> User:
    user = User.objects.filter(username=username).first()
    if user is None:
        user = User.objects.create_user(username, DEMO_PASSWORD, display_name=display_name, home_hospital=home_hospital)
    return user


class Command(BaseCommand):
    help = "Create the demo hospital and one user per role (idempotent), and print their logins."

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEMO_DATA_ALLOWED:
            raise CommandError("Demo data is switched off in these settings (production).")
        hospital = Hospital.objects.filter(code=DEMO_HOSPITAL["code"]).first() or hospital_create(**DEMO_HOSPITAL)
        rows = []
        with hospital_context(hospital):
            for username, (display_name, role) in HOSPITAL_USERS.items():
                user = _user(username, display_name, hospital)
                membership_grant(actor=None, hospital=hospital, user=user, role=role)
                rows.append((username, str(role.label)))
        for username, (display_name, platform_role) in PLATFORM_USERS.items():
            user = _user(username, display_name)
            platform_role_grant(actor=None, user=user, role=platform_role)
            rows.append((username, str(platform_role.label)))
        self.stdout.write(f"Demo hospital: {hospital.name_zh} (code {hospital.code})")
        self.stdout.write(f"Every demo user's password: {DEMO_PASSWORD}")
        for username, label in rows:
            self.stdout.write(f"  {username:<12} {label}")
        # The portal's demo patient (apps.portal.demo): sign in at /portal/demo/login/.
        from apps.portal.demo import DEMO_ID_NUMBER, DEMO_PHONE, demo_patient_seed

        with hospital_context(hospital):
            demo_patient_seed(hospital=hospital, doctor=User.objects.get(username="reporter"))
        self.stdout.write(
            f"Demo patient: /portal/{hospital.code}/login/ with phone {DEMO_PHONE} and ID-card last four "
            f"{DEMO_ID_NUMBER[-4:]}; the SMS code is printed on this console (SMS_PROVIDER=console)."
        )
