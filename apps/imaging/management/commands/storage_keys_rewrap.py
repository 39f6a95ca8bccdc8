from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint
from apps.imaging.crypto import KeyUnwrapError, master_key_fallbacks
from apps.imaging.keys import hospital_key_rewrap
from apps.tenants.context import hospital_context
from apps.tenants.models import Hospital


class Command(BaseCommand):
    help = (
        "After a master key rotation (the new key in STORAGE_MASTER_KEY, the old one in "
        "STORAGE_MASTER_KEY_FALLBACKS): wrap every hospital key under the new master key. Nothing stored "
        "is re-encrypted. Safe to run again; once it reports none left, remove the fallback."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hospital", metavar="CODE", help="only this hospital (default: every hospital)")

    def handle(self, *args: Any, **options: Any) -> None:
        master_key_fallbacks()  # a malformed fallback is a configuration error, before any hospital
        hospitals = Hospital.objects.order_by("code")
        if options["hospital"]:
            hospitals = hospitals.filter(code=options["hospital"])
            if not hospitals.exists():
                raise CommandError(f"No hospital has the code {options['hospital']!r}.")
        rewrapped, unreadable = 0, []
        for hospital in hospitals:
            try:
                with hospital_context(hospital):
                    if hospital_key_rewrap(hospital):
                        audit_record(
                            action=Action.STORAGE_KEY_REWRAPPED, hospital=hospital, entry_point=EntryPoint.COMMAND,
                            object_type="hospital_key", object_id=str(hospital.public_id),
                        )  # fmt: skip
                        rewrapped += 1
                        self.stdout.write(f"{hospital.code}: wrapped under the current master key")
            except KeyUnwrapError:
                unreadable.append(hospital.code)
                self.stdout.write(f"{hospital.code}: unwraps under neither the master key nor any fallback")
        self.stdout.write(f"hospital keys re-wrapped: {rewrapped}")
        if unreadable:
            raise CommandError(
                f"{len(unreadable)} hospital key(s) unwrap under no configured master key: "
                "add the master key they were wrapped under to STORAGE_MASTER_KEY_FALLBACKS."
            )
