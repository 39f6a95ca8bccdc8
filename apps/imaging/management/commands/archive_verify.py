from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.imaging.fixity import VerifyScope, hospital_archive_verify
from apps.tenants.models import Hospital


class Command(BaseCommand):
    help = (
        "Read stored objects back and check each against its recorded size, SHA-256 and per-segment "
        "authentication tags, hospital by hospital. Names failed objects by public id only; exits "
        "non-zero if any failed. Objects stored before 30 November 2026 that pass have their data key "
        "re-wrapped, bound to their instance and digest."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hospital", metavar="CODE", help="only this hospital (default: every hospital)")
        parser.add_argument("--limit", type=int, help="a random sample of at most N objects per hospital")
        parser.add_argument("--since-days", type=int, metavar="D", help="only objects stored in the last D days")

    def handle(self, *args: Any, **options: Any) -> None:
        for name in ("limit", "since_days"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        hospitals = Hospital.objects.order_by("code")
        if options["hospital"]:
            hospitals = hospitals.filter(code=options["hospital"])
            if not hospitals.exists():
                raise CommandError(f"No hospital has the code {options['hospital']!r}.")
        scope = VerifyScope(limit=options["limit"], since_days=options["since_days"])
        failed = 0
        for hospital in hospitals:
            result = hospital_archive_verify(hospital=hospital, scope=scope)
            # Counts and opaque ids only: nothing here names a patient or a study.
            line = f"{hospital.code}: verified {result.verified}, failed {len(result.failed)}"
            if result.rebound:
                line += f", keys bound to their instance {result.rebound}"
            if result.left_unbound:
                line += f", older keys left unbound {result.left_unbound}"
            self.stdout.write(line)
            for name in result.failed:
                self.stdout.write(f"  failed: {name}")
            failed += len(result.failed)
        if failed:
            raise CommandError(f"{failed} stored object(s) failed the fixity check.")
