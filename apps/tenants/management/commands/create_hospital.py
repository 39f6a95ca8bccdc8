from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.tenants.services import hospital_create


class Command(BaseCommand):
    help = "Create a hospital (tenant). CODE appears in URLs: lowercase letters, digits, hyphens."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code")
        parser.add_argument("--name", required=True, help="Display name in Chinese")
        parser.add_argument("--name-en", default="", help="Display name in English")
        parser.add_argument(
            "--institution-name", default="", help="Canonical DICOM Institution Name (defaults to --name)"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            hospital = hospital_create(
                code=options["code"],
                name_zh=options["name"],
                name_en=options["name_en"],
                institution_name=options["institution_name"],
            )
        except ValidationError as error:
            messages = "; ".join(f"{field}: {' '.join(errs)}" for field, errs in error.message_dict.items())
            raise CommandError(messages) from error
        self.stdout.write(f"created hospital {hospital.code}")
