from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from apps.tenants.models import ApiToken, Hospital
from apps.tenants.services import api_token_issue


class Command(BaseCommand):
    help = "Issue a bearer token for one hospital's API and print it (it is shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("code")
        parser.add_argument("--name", default="api", help="What the token is for, for example 'RIS'")
        parser.add_argument(
            "--scope",
            action="append",
            choices=ApiToken.Scope.values,
            help="Repeat for several (default: read and write)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        hospital = Hospital.objects.filter(code=options["code"]).first()
        if hospital is None:
            raise CommandError(f"No hospital with code {options['code']!r}.")
        scopes = options["scope"] or [ApiToken.Scope.READ.value, ApiToken.Scope.WRITE.value]
        _token, raw = api_token_issue(hospital=hospital, name=options["name"], scopes=scopes)
        self.stdout.write(raw)
