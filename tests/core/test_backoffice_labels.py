"""Every label the back office shows comes in Simplified Chinese: column headers, field names
and help texts of every screen (the patient-access policy of apps/portal aside)."""

import pytest
from django.contrib import admin
from django.contrib.admin.utils import label_for_field
from django.db import models
from django.utils import translation

from apps.core.backoffice import BackOfficeModelAdmin

# Technical names that read the same in Chinese.
SAME_IN_EVERY_LANGUAGE = {"SHA-256"}
SKIPPED_APPS = {"portal"}


def _chinese(text: object) -> bool:
    return str(text) in SAME_IN_EVERY_LANGUAGE or any("\u4e00" <= character <= "\u9fff" for character in str(text))


def _screens() -> list[tuple[type[models.Model], admin.ModelAdmin]]:
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        # Only the back office's own screens: others (django-otp's) no role can open.
        if isinstance(model_admin, BackOfficeModelAdmin) and model._meta.app_label not in SKIPPED_APPS
    ]


@pytest.mark.parametrize(("model", "model_admin"), _screens(), ids=lambda value: getattr(value, "__name__", ""))
def test_every_column_header_is_translated(model, model_admin):
    with translation.override("zh-hans"):
        untranslated = [
            name for name in model_admin.list_display if not _chinese(label_for_field(name, model, model_admin))
        ]
    assert untranslated == []


@pytest.mark.parametrize(("model", "model_admin"), _screens(), ids=lambda value: getattr(value, "__name__", ""))
def test_every_field_name_and_help_text_is_translated(model, model_admin):
    with translation.override("zh-hans"):
        untranslated = [
            field.name
            for field in model._meta.concrete_fields
            if not field.auto_created
            and (not _chinese(field.verbose_name) or (field.help_text and not _chinese(field.help_text)))
        ]
    assert untranslated == []


def test_djangos_own_untranslated_admin_strings_are_translated_here():
    with translation.override("zh-hans"):
        assert translation.gettext("- Select an option -") != "- Select an option -"
        assert translation.gettext("Filter by %(field_name)s") != "Filter by %(field_name)s"
