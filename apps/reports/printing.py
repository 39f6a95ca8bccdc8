"""The printable report: one template for the HTML print page and the PDF.

The PDF is rendered by WeasyPrint from the same HTML, so both show the same thing. WeasyPrint
lays out Chinese text with Pango and embeds (subsets of) the Noto CJK fonts Debian's
fonts-noto-cjk installs, so the PDF reads the same on any device. It needs Debian's Pango at run
time; without it ``report_pdf_bytes`` raises ``PdfUnavailable`` with what to install, and
everything else (the HTML print page included) keeps working.

Every print carries a QR code with the version's verification URL (``apps.reports.verification``).
"""

import logging
from dataclasses import dataclass
from typing import Any

import segno
from django.conf import settings
from django.contrib.staticfiles import finders
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.utils.translation import gettext as _

from apps.imaging.models import Patient
from apps.imaging.selectors import PatientIdentity, patient_identity
from apps.reports.models import Report, ReportVersion
from apps.reports.signing import version_verify
from apps.reports.verification import verification_path

PRINT_CSS = "reports/print.css"


class PdfUnavailable(RuntimeError):
    """The PDF library cannot load on this machine (Debian's Pango is missing)."""


@dataclass(frozen=True)
class PrintedReport:
    version: ReportVersion
    patient: PatientIdentity | None
    verification_url: str
    qr_data_uri: str
    signature_valid: bool
    amended: bool

    @property
    def sex(self) -> str:
        code = self.patient.sex if self.patient else ""
        return str(dict(Patient.Sex.choices).get(code, code)) if code else ""


def verification_url(version: ReportVersion) -> str:
    """The absolute URL the QR code carries, on ``PORTAL_PUBLIC_ORIGIN`` (the origin patients and
    anyone holding the printout reach, whichever screen printed it)."""
    return f"{str(settings.PORTAL_PUBLIC_ORIGIN).rstrip('/')}{verification_path(version)}"


def _patient(version: ReportVersion) -> PatientIdentity | None:
    study = version.report.study
    try:
        return patient_identity(version.hospital, study.patient)
    except Exception:  # noqa: BLE001 - a record that cannot be unsealed prints without the identity
        return None


def printed_report(*, version: ReportVersion) -> PrintedReport:
    """Everything the print template shows. Call inside the version's hospital context."""
    url = verification_url(version)
    return PrintedReport(
        version=version,
        patient=_patient(version),
        verification_url=url,
        qr_data_uri=segno.make(url, error="m").png_data_uri(scale=4, border=4),
        signature_valid=version_verify(version, version.report),
        amended=version.status == Report.Status.AMENDED,
    )


def print_html(*, printed: PrintedReport, for_pdf: bool, request: HttpRequest | None = None) -> str:
    context: dict[str, Any] = {"printed": printed, "version": printed.version, "for_pdf": for_pdf}
    context["hospital"] = printed.version.hospital
    context["study"] = printed.version.report.study
    return render_to_string("reports/print.html", context, request=request)


def _weasyprint() -> Any:
    try:
        import weasyprint
    except (OSError, ImportError) as error:  # Pango's shared libraries (or WeasyPrint) are missing.
        raise PdfUnavailable(
            _("PDF printing needs Debian's Pango (apt-get install libpango-1.0-0 libpangoft2-1.0-0).")
        ) from error
    # WeasyPrint logs every layout step at INFO; only its warnings matter here.
    logging.getLogger("weasyprint.progress").setLevel(logging.WARNING)
    return weasyprint


def report_pdf_bytes(*, version: ReportVersion) -> bytes:
    """The printed report of ``version`` as a PDF (A4, Chinese text with embedded Noto CJK fonts,
    a QR code to the verification page). Call inside the version's hospital context; the caller
    audits the print (REPORT_PRINTED)."""
    weasyprint = _weasyprint()
    html = print_html(printed=printed_report(version=version), for_pdf=True)
    stylesheet = weasyprint.CSS(filename=finders.find(PRINT_CSS))
    pdf: bytes = weasyprint.HTML(string=html).write_pdf(stylesheets=[stylesheet])
    return pdf
