"""Bootstrap a platform account (for example the first security administrator)."""

import getpass
import os
from typing import Any

from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from apps.accounts.models import User
from apps.accounts.roles import PlatformRole
from apps.accounts.services import platform_role_grant


class Command(BaseCommand):
    help = "Create a user holding one platform role. The password comes from NEW_USER_PASSWORD or a prompt."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("username")
        parser.add_argument("role", choices=PlatformRole.values)
        parser.add_argument("--display-name", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        if User.objects.filter(username=options["username"]).exists():
            raise CommandError("That username is taken.")
        password = os.environ.get("NEW_USER_PASSWORD") or getpass.getpass("Password: ")
        user = User(username=options["username"], display_name=options["display_name"])
        try:
            password_validation.validate_password(password, user)
        except ValidationError as error:
            raise CommandError(" ".join(error.messages)) from error
        with transaction.atomic():
            user.set_password(password)
            user.save()
            platform_role_grant(actor=None, user=user, role=PlatformRole(options["role"]))
        self.stdout.write(f"created {user.username} with role {options['role']}")
