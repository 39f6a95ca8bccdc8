"""The printed report (PDF and HTML) and the public verification page its QR code opens."""

import io
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from pypdf import PdfReader

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.reports.models import ReportVersion
from apps.reports.printing import report_pdf_bytes, verification_url
from apps.reports.services import report_amend, report_enter_in_error
from apps.tenants.context import hospital_context, platform_scope
from tests.reports.conftest import FINDINGS, PATIENT_NAME, tamper


def _latest(report) -> ReportVersion:
    with hospital_context(report.hospital):
        return ReportVersion.objects.select_related("report__study__patient", "hospital").get(
            report=report, number=report.current_version
        )


def _pdf(report) -> bytes:
    with hospital_context(report.hospital):
        return report_pdf_bytes(version=_latest(report))


def _url(report) -> str:
    with hospital_context(report.hospital):
        return verification_url(_latest(report))


def _qr_texts(pdf: bytes) -> list[str]:
    """Decode every image of the PDF with zbarimg (Debian's zbar-tools)."""
    texts = []
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for image in page.images:
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "image.png"
                image.image.save(path)
                result = subprocess.run(["zbarimg", "--raw", "-q", str(path)], capture_output=True, text=True)
                texts += [line for line in result.stdout.splitlines() if line]
    return texts


def _events(action: Action) -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def test_pdf_holds_the_chinese_text_of_the_report(final_report):
    pdf = _pdf(final_report)
    assert pdf.startswith(b"%PDF-")
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
    compact = re.sub(r"\s+", "", text)
    for value in (FINDINGS["findings"], FINDINGS["impression"], "第一人民医院", PATIENT_NAME):
        assert re.sub(r"\s+", "", value) in compact


def test_pdf_embeds_its_cjk_font(final_report):
    reader = PdfReader(io.BytesIO(_pdf(final_report)))
    fonts = set()
    for page in reader.pages:
        resources: Any = page["/Resources"]
        for font in resources["/Font"].values():
            font = font.get_object()
            descendants = font.get("/DescendantFonts")
            descriptor = (descendants[0].get_object() if descendants else font).get("/FontDescriptor")
            if descriptor is not None and any(key in descriptor for key in ("/FontFile", "/FontFile2", "/FontFile3")):
                fonts.add(str(font["/BaseFont"]))
    assert any("CJK" in name for name in fonts), fonts


def test_the_qr_code_decodes_to_the_verification_url(final_report):
    texts = _qr_texts(_pdf(final_report))
    assert texts == [_url(final_report)]
    assert texts[0].startswith(f"{settings.PORTAL_PUBLIC_ORIGIN}/r/")


def test_every_print_of_a_version_carries_the_same_url_and_one_token_row(final_report):
    from apps.reports.models import ReportVerificationToken

    assert _url(final_report) == _url(final_report)
    with hospital_context(final_report.hospital):
        assert ReportVerificationToken.objects.count() == 1


def test_verification_page_confirms_signature_version_and_hash(client, final_report):
    version = _latest(final_report)
    response = client.get(_url(final_report))
    assert response.status_code == 200
    body = response.content.decode()
    assert 'id="verdict"' in body and "verified ok" in body
    assert version.content_sha256 in body
    assert PATIENT_NAME not in body
    assert FINDINGS["findings"] not in body and FINDINGS["impression"] not in body
    assert "no-store" in response["Cache-Control"]
    [event] = _events(Action.REPORT_VERIFIED)
    assert event.details["verified"] is True
    assert event.details["version"] == 2
    assert event.hospital_id == final_report.hospital_id


def test_unknown_or_malformed_token_is_404(client, final_report):
    assert client.get("/r/" + "A" * 43).status_code == 404
    assert client.get("/r/short").status_code == 404
    assert client.get("/r/" + "é" * 43).status_code == 404
    assert client.get("/r/" + "%00" * 43).status_code == 404


def test_verification_page_says_when_a_later_version_supersedes_the_printout(client, world, final_report):
    url = _url(final_report)
    with hospital_context(world.first.hospital):
        report_amend(report=final_report, actor=world.first["reporting_doctor"], expected_version=2,
                     fields={"impression": "良性结节"}, reason="复核")  # fmt: skip
    response = client.get(url)
    body = response.content.decode()
    assert "verified ok" in body
    assert response.context["result"].superseded and response.context["result"].latest_number == 3
    assert 'class="verified bad" id="superseded"' in body and "（3）" in body


def test_verification_page_warns_when_the_report_was_entered_in_error(client, world, final_report):
    url = _url(final_report)
    with hospital_context(world.first.hospital):
        report_enter_in_error(actor=world.first["hospital_admin"], report=final_report, reason="患者信息错误")
    body = client.get(url).content.decode()
    assert "verified bad" in body and 'id="superseded"' in body


@pytest.mark.django_db(transaction=True)
def test_tampered_version_fails_on_the_verification_page(client, world, study, owner_connection):
    from apps.reports.models import Report
    from apps.reports.services import report_create, report_sign

    doctor = world.first["reporting_doctor"]
    with hospital_context(world.first.hospital):
        first = report_create(hospital=world.first.hospital, study=study, actor=doctor, fields=FINDINGS)
        report_sign(report=first.report, actor=doctor, expected_version=1)
        report = Report.objects.get(pk=first.report_id)
    url = _url(report)
    tamper(owner_connection, report, impression="未见异常")
    response = client.get(url)
    assert response.status_code == 200
    assert 'id="verdict"' in response.content.decode() and "verified bad" in response.content.decode()
    [event] = _events(Action.REPORT_VERIFIED)
    assert event.details["verified"] is False


def test_a_printed_draft_says_it_is_unsigned_and_so_does_its_verification_page(client, world, study):
    from apps.reports.services import report_create

    with hospital_context(world.first.hospital):
        draft = report_create(hospital=world.first.hospital, study=study, actor=world.first["reporting_doctor"],
                              fields=FINDINGS)  # fmt: skip
    pdf_text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(_pdf(draft.report))).pages)
    assert "未签署" in pdf_text
    body = client.get(_url(draft.report)).content.decode()
    assert 'class="verified bad" id="verdict"' in body and "未签名" in body
