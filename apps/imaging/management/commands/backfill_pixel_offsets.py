from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.imaging.backfill import pixel_offsets_backfill
from apps.tenants.models import Hospital


class Command(BaseCommand):
    help = (
        "Record where Pixel Data starts in instances stored before ingest recorded it (imaging 0006), "
        "hospital by hospital. Safe to interrupt and to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--hospital", metavar="CODE", help="only this hospital (default: every hospital)")
        parser.add_argument("--batch", type=int, default=200, help="instances read per batch (default 200)")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["batch"] < 1:
            raise CommandError("--batch must be at least 1.")
        hospitals = Hospital.objects.order_by("code")
        if options["hospital"]:
            hospitals = hospitals.filter(code=options["hospital"])
            if not hospitals.exists():
                raise CommandError(f"No hospital has the code {options['hospital']!r}.")
        failed = 0
        for hospital in hospitals:
            result = pixel_offsets_backfill(hospital=hospital, batch_size=options["batch"])
            # Counts and opaque ids only: nothing here names a patient or a study.
            self.stdout.write(
                f"{hospital.code}: scanned {result.scanned}, filled {result.filled}, "
                f"no direct offset {result.without_offset}, failed {len(result.failed)}"
            )
            for public_id in result.failed:
                self.stdout.write(f"  failed: instance {public_id}")
            failed += len(result.failed)
        if failed:
            raise CommandError(f"{failed} instance(s) could not be read; they keep working without an offset.")
