from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import translation

from apps.audit.services import audit_chains_verify


class Command(BaseCommand):
    help = "Verify the hash chains of the audit trail. Exits non-zero naming the first broken event."

    def handle(self, *args: Any, **options: Any) -> None:
        # Operators' output, in English like the other commands' (the back office's screen is Chinese).
        with translation.override("en"):
            problems = audit_chains_verify()
        if problems:
            for problem in problems:
                self.stderr.write(f"BROKEN {problem}")
            raise CommandError(f"{len(problems)} audit chain(s) broken.")
        self.stdout.write("audit chains intact")
