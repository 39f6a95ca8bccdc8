from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.imaging.sweep import SweepFailed, SweepRefused, SweepResult, archive_sweep


class Command(BaseCommand):
    help = (
        "Remove staged files and stored objects no database row needs (left by crashes), and leftover "
        "temporary files, once older than ARCHIVE_ORPHAN_GRACE_HOURS. Prints counts only."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="count what would be removed; remove nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        dry_run: bool = options["dry_run"]
        try:
            result = archive_sweep(dry_run=dry_run)
        except SweepRefused as refused:
            self._report(refused.result, dry_run=dry_run)
            raise CommandError(
                f"More than ARCHIVE_SWEEP_MAX_REMOVALS ({settings.ARCHIVE_SWEEP_MAX_REMOVALS}) orphans: nothing "
                "was removed. Check that this is the archive's own database before raising the limit."
            ) from None
        except SweepFailed as failed:
            self._report(failed.result, dry_run=dry_run)
            raise CommandError(f"{failed} Nothing else was changed; run the sweep again.") from None
        self._report(result, dry_run=dry_run)

    def _report(self, result: SweepResult, *, dry_run: bool) -> None:
        removed = "would remove" if dry_run else "removed"
        grace = settings.ARCHIVE_ORPHAN_GRACE_HOURS
        self.stdout.write(
            f"staging: {result.staged_files} files, {removed} {result.staged_removed} orphans, "
            f"kept {result.staged_kept_young} orphans younger than {grace} h"
        )
        self.stdout.write(
            f"objects: {result.objects} objects, {removed} {result.objects_removed} orphans, "
            f"kept {result.objects_kept_young} orphans younger than {grace} h"
        )
        self.stdout.write(
            f"temporary files: {removed} {result.partial_removed}, "
            f"kept {result.partial_kept_young} younger than {grace} h"
        )
