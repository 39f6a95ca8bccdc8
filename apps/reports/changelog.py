"""The change log of reports for dispute resolution: each version against the one before it,
field by field, with who, when and why; as rows for the back office, CSV and PDF."""

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.template.loader import render_to_string

from apps.reports.models import ReportVersion
from apps.reports.signing import CONTENT_FIELDS, content_of, version_verify

CSV_COLUMNS = [
    "hospital", "report", "study_instance_uid", "version", "status", "author", "signed_by", "signed_at",
    "created_at", "reason", "sha256_before", "sha256_after", "verified", "field", "before", "after",
]  # fmt: skip
# A spreadsheet treats a cell starting with one of these as a formula; a leading quote keeps it text.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class FieldChange:
    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class ChangeEntry:
    version: ReportVersion
    previous: ReportVersion | None
    verified: bool
    changes: list[FieldChange]


def field_changes(old: ReportVersion | None, new: ReportVersion) -> list[FieldChange]:
    """Exactly the content fields that differ from ``old`` to ``new`` (all non-empty ones when
    ``new`` is the first version). Doctors are named by public id."""
    after = content_of(new)
    before = content_of(old) if old is not None else dict.fromkeys(CONTENT_FIELDS)
    return [
        FieldChange(name, before[name], after[name])
        for name in CONTENT_FIELDS
        if before[name] != after[name] and (old is not None or after[name])
    ]


def change_entries(versions: Iterable[ReportVersion]) -> list[ChangeEntry]:
    """For each version, its changes against the previous version of the same report.

    ``versions`` should carry ``report`` and the signing key (select_related); the previous
    versions are read in one query."""
    versions = list(versions)
    wanted = {(version.report_id, version.number - 1) for version in versions}
    previous_by_key = {
        (previous.report_id, previous.number): previous
        for previous in ReportVersion.objects.filter(
            report_id__in={report_id for report_id, _number in wanted}
        ).select_related("reporting_doctor", "reviewing_doctor")
        if (previous.report_id, previous.number) in wanted
    }
    entries = []
    for version in versions:
        previous = previous_by_key.get((version.report_id, version.number - 1))
        entries.append(
            ChangeEntry(
                version=version,
                previous=previous,
                verified=version_verify(version, version.report),
                changes=field_changes(previous, version),
            )
        )
    return entries


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def change_log_csv(entries: Iterable[ChangeEntry]) -> str:
    """One row per changed field (one row for a version that changed no field), UTF-8 with BOM."""
    out = io.StringIO()
    out.write("\ufeff")  # So spreadsheet programs read the Chinese text as UTF-8.
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in entries:
        version = entry.version
        common = [
            version.hospital.code, version.report.public_id, version.report.study.study_instance_uid,
            version.number, version.status, version.author.get_username(),
            version.signed_by.get_username() if version.signed_by else "",
            version.signed_at.isoformat() if version.signed_at else "", version.created_at.isoformat(),
            version.reason, entry.previous.content_sha256 if entry.previous else "", version.content_sha256,
            "yes" if entry.verified else "NO",
        ]  # fmt: skip
        for change in entry.changes or [FieldChange("", "", "")]:
            writer.writerow([_cell(value) for value in [*common, change.field, change.before, change.after]])
    return out.getvalue()


def change_log_pdf(entries: list[ChangeEntry], *, title: str) -> bytes:
    """The change log as an A4 PDF (WeasyPrint; raises ``PdfUnavailable`` without Pango)."""
    from django.contrib.staticfiles import finders

    from apps.reports.printing import PRINT_CSS, _weasyprint

    weasyprint = _weasyprint()
    html = render_to_string("reports/changelog_pdf.html", {"entries": entries, "title": title})
    pdf: bytes = weasyprint.HTML(string=html).write_pdf(stylesheets=[weasyprint.CSS(filename=finders.find(PRINT_CSS))])
    return pdf
