"""The DICOM gateway against real clients (DCMTK's echoscu and storescu) and pynetdicom's SCU.

The gateway runs in this process on a free port; its association threads use their own database
connections, so these tests commit (transaction=True). Ingest runs eagerly (CELERY_TASK_ALWAYS_EAGER).
"""

import datetime
import io
import ipaddress
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pydicom
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.core.management import CommandError, call_command
from django.db import connection
from django.urls import reverse
from pynetdicom import AE, _config
from pynetdicom.sop_class import CTImageStorage

from apps.audit.models import AuditEvent
from apps.audit.vocabulary import Action
from apps.dicomweb import gateway as gateway_module
from apps.dicomweb.gateway import gateway_start, gateway_stop, tls_context
from apps.imaging.models import DicomNode, Instance, StagedObject
from apps.tenants.context import hospital_context, platform_scope
from tests.dicomweb.helpers import read_multipart, token_for
from tests.imaging.dicom_factory import make_ct_series, make_ct_slice
from tests.imaging.temporary_files import temporary_files

pytestmark = pytest.mark.django_db(transaction=True)

# DCMTK is the independent client these tests drive; `make test` installs it (scripts/ensure_tools.sh).
# Without it the tests fail rather than skip, so a missing client is never mistaken for a pass.
assert shutil.which("storescu") and shutil.which("echoscu"), "DCMTK is missing: run scripts/ensure_tools.sh"

GATEWAY_AE = "YINGXIANG"
SECOND_INSTITUTION = "SECOND PEOPLES HOSPITAL"


class Gateway:
    """One running gateway of a test, and the clients that talk to it."""

    def __init__(self, **options):
        self.server = gateway_start(host="127.0.0.1", port=0, ae_title=GATEWAY_AE, **options)
        self.port = self.server.server_address[1]

    def run(self, program: str, *arguments: str, calling: str = "CT01", called: str = GATEWAY_AE, timeout=60):
        command = [program, "-aet", calling, "-aec", called, "-to", "10", "-ta", "10", "-td", "30", *arguments]
        return subprocess.run(
            [*command, "127.0.0.1", str(self.port)] if program == "echoscu" else command,
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def echo(self, *options: str, calling: str = "CT01", called: str = GATEWAY_AE, timeout=60):
        return self.run("echoscu", *options, calling=calling, called=called, timeout=timeout)

    def store(self, files: list[Path], *options: str, calling: str = "CT01"):
        return self.run("storescu", *options, "127.0.0.1", str(self.port), *map(str, files), calling=calling)

    def wait_until_idle(self, timeout: float = 10.0) -> None:
        """Associations finish (audit, connection closed) just after the client hears the release."""
        deadline = time.monotonic() + timeout
        while self.server.active_associations:
            assert time.monotonic() < deadline, "associations still running"
            time.sleep(0.02)


@pytest.fixture
def nodes(world):
    with hospital_context(world.first.hospital):
        DicomNode.objects.create(hospital=world.first.hospital, ae_title="CT01", description="CT room 1")
    with hospital_context(world.second.hospital):
        DicomNode.objects.create(hospital=world.second.hospital, ae_title="MR02")


@pytest.fixture
def start_gateway(nodes, local_storage, monkeypatch):
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", _config.STORE_RECV_CHUNKED_DATASET)  # restored after
    gateways: list[Gateway] = []

    def _start(**options) -> Gateway:
        gateway = Gateway(**options)
        gateways.append(gateway)
        return gateway

    yield _start
    for gateway in gateways:
        gateway_stop(gateway.server, grace_seconds=10)


@pytest.fixture
def gateway(start_gateway) -> Gateway:
    return start_gateway()


def _write(directory: Path, objects: list[bytes]) -> list[Path]:
    files = []
    for number, data in enumerate(objects):
        path = directory / f"object{number}.dcm"
        path.write_bytes(data)
        files.append(path)
    return files


def _data_set_bytes(part10: bytes) -> bytes:
    """What follows the File Meta Information (whose group length is the first element's value)."""
    return part10[144 + int.from_bytes(part10[140:144], "little") :]


def _audit_events(action: Action) -> list[AuditEvent]:
    with platform_scope("audit"):
        return list(AuditEvent.objects.filter(action=action).order_by("id"))


def _send_with_pynetdicom(port: int, path: Path, *, calling: str = "CT01") -> int:
    """C-STORE the file's data set bytes as they are, undecoded; return the status."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(CTImageStorage, pydicom.uid.ExplicitVRLittleEndian)
    previous, _config.STORE_SEND_CHUNKED_DATASET = _config.STORE_SEND_CHUNKED_DATASET, True
    try:
        assoc = ae.associate("127.0.0.1", port, ae_title=GATEWAY_AE)
        assert assoc.is_established
        status = assoc.send_c_store(path)
        assoc.release()
    finally:
        _config.STORE_SEND_CHUNKED_DATASET = previous
    return int(status.Status)


def _database_sessions() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()")
        return cursor.fetchone()[0]


# --- Association policy ------------------------------------------------------------------


def test_echo_from_a_registered_node_succeeds(gateway):
    result = gateway.echo()
    assert result.returncode == 0, result.stderr


def test_unknown_calling_ae_is_rejected_and_audited(gateway):
    result = gateway.echo(calling="INTRUDER")
    assert result.returncode != 0
    assert "Association Rejected" in result.stderr + result.stdout
    [event] = _audit_events(Action.DICOM_ASSOCIATION_REFUSED)
    assert (event.event_id, event.event_type, event.outcome, event.entry_point) == ("110113", "110126", 4, "dimse")
    assert event.hospital is None
    assert event.details == {
        "reason": "calling_ae_title_unknown", "calling_ae_title": "INTRUDER", "called_ae_title": GATEWAY_AE,
        "peer_address": "127.0.0.1",
    }  # fmt: skip


def test_a_wrong_called_ae_title_is_rejected_and_audited_for_the_hospital(gateway, world):
    result = gateway.echo(called="SOMEONE-ELSE")
    assert result.returncode != 0
    [event] = _audit_events(Action.DICOM_ASSOCIATION_REFUSED)
    assert event.details["reason"] == "called_ae_title_wrong"
    assert event.hospital_id == world.first.hospital.pk


def test_a_node_of_a_suspended_hospital_is_rejected(gateway, world):
    world.second.hospital.status = "suspended"
    world.second.hospital.save()
    assert gateway.echo(calling="MR02").returncode != 0
    [event] = _audit_events(Action.DICOM_ASSOCIATION_REFUSED)
    assert event.details["reason"] == "hospital_suspended"


def test_every_association_gives_back_its_database_connection(gateway):
    before = _database_sessions()
    for calling in ("CT01", "INTRUDER", "CT01"):
        gateway.echo(calling=calling)
    gateway.wait_until_idle()
    deadline = time.monotonic() + 10
    while _database_sessions() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _database_sessions() == before


# --- C-STORE -----------------------------------------------------------------------------


def test_a_series_sent_by_storescu_is_staged_ingested_and_retrievable(gateway, world, client, tmp_path):
    series = make_ct_series(3, PatientName="Gateway^Test", PatientID="P-GATEWAY")
    result = gateway.store(_write(tmp_path, series))
    assert result.returncode == 0, result.stderr
    gateway.wait_until_idle()

    hospital = world.first.hospital
    with hospital_context(hospital):
        assert Instance.objects.filter(hospital=hospital).count() == 3
        staged = list(StagedObject.objects.values_list("source", "status"))
        assert staged == [("dimse", "stored")] * 3
        assert len(set(StagedObject.objects.values_list("batch", flat=True))) == 1

    sent = pydicom.dcmread(io.BytesIO(series[1]))
    token = token_for(hospital)
    url = (
        f"/api/first/dicom-web/studies/{sent.StudyInstanceUID}/series/{sent.SeriesInstanceUID}"
        f"/instances/{sent.SOPInstanceUID}"
    )
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 200
    [body] = read_multipart(b"".join(response.streaming_content), response["Content-Type"])
    retrieved = pydicom.dcmread(io.BytesIO(body))
    assert retrieved.SOPInstanceUID == sent.SOPInstanceUID
    assert retrieved.PixelData == sent.PixelData
    assert retrieved.file_meta.TransferSyntaxUID == sent.file_meta.TransferSyntaxUID
    # The archive keeps the data set exactly as it came over the network; only the file meta is the gateway's.
    assert _data_set_bytes(body) == _data_set_bytes(series[1])


def test_data_sets_received_in_memory_are_staged_the_same(gateway, world, tmp_path, monkeypatch):
    monkeypatch.setattr(_config, "STORE_RECV_CHUNKED_DATASET", False)
    [sent] = make_ct_series(1)
    assert gateway.store(_write(tmp_path, [sent])).returncode == 0
    gateway.wait_until_idle()
    with hospital_context(world.first.hospital):
        assert StagedObject.objects.get().status == "stored"
        assert Instance.objects.get().sop_instance_uid == pydicom.dcmread(io.BytesIO(sent)).SOPInstanceUID


def test_received_data_sets_never_reach_the_disk_in_plaintext(gateway, world, tmp_path, settings, monkeypatch):
    temporary_directory = tmp_path / "temporary"
    temporary_directory.mkdir()
    # pynetdicom's own temporary files would land here, as would the gateway's sealed spools.
    monkeypatch.setattr(tempfile, "tempdir", str(temporary_directory))
    settings.FILE_UPLOAD_TEMP_DIR = str(temporary_directory)
    # Larger than what is received in memory: these are spooled as they arrive.
    settings.DICOM_GATEWAY_IN_MEMORY_MAX_SIZE = 64 * 1024
    seen: list[Path] = []
    stage = gateway_module.staged_object_create

    def stage_and_look(**kwargs):
        # The whole data set has arrived and is spooled, not yet staged.
        files = temporary_files(temporary_directory)
        seen.extend(files)
        assert [path for path in files if b"Mingzi^Mimi" in path.read_bytes()] == []
        return stage(**kwargs)

    monkeypatch.setattr(gateway_module, "staged_object_create", stage_and_look)
    sent = make_ct_series(2, PatientName="Mingzi^Mimi", Rows=512, Columns=512)
    result = gateway.store(_write(tmp_path, sent))
    assert result.returncode == 0, result.stderr
    gateway.wait_until_idle()
    assert seen, "the data sets were not spooled to the temporary directory"
    assert temporary_files(temporary_directory) == []
    with hospital_context(world.first.hospital):
        assert sorted(StagedObject.objects.values_list("status", flat=True)) == ["stored", "stored"]


def test_data_sets_up_to_the_memory_limit_are_received_without_a_temporary_file(
    gateway, world, client, tmp_path, settings, monkeypatch
):
    temporary_directory = tmp_path / "temporary"
    temporary_directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary_directory))
    settings.FILE_UPLOAD_TEMP_DIR = str(temporary_directory)
    spooled: list[int] = []
    real_write = gateway_module.SealedSpool.write

    def spool_and_count(spool, data):
        spooled.append(len(data))
        return real_write(spool, data)

    monkeypatch.setattr(gateway_module.SealedSpool, "write", spool_and_count)
    sent = make_ct_series(3, Rows=256, Columns=256)  # 128 KiB of pixels each
    # With the File Meta Information the gateway writes for each, a little over the bytes sent.
    settings.DICOM_GATEWAY_IN_MEMORY_MAX_SIZE = max(len(data) for data in sent) + 4096
    result = gateway.store(_write(tmp_path, sent))
    assert result.returncode == 0, result.stderr
    gateway.wait_until_idle()
    assert spooled == []
    assert temporary_files(temporary_directory) == []
    token = token_for(world.first.hospital)
    for data in sent:
        ds = pydicom.dcmread(io.BytesIO(data))
        url = (
            f"/api/first/dicom-web/studies/{ds.StudyInstanceUID}/series/{ds.SeriesInstanceUID}"
            f"/instances/{ds.SOPInstanceUID}"
        )
        response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {token}")
        [body] = read_multipart(b"".join(response.streaming_content), response["Content-Type"])
        assert _data_set_bytes(body) == _data_set_bytes(data)


def test_series_level_rules_run_once_the_association_ends(gateway, world, tmp_path):
    from apps.imaging.models import ValidationFinding

    gap = make_ct_series(5, slice_thickness=5.0, positions=[0.0, 5.0, 10.0, 25.0, 30.0])
    even = make_ct_series(3, slice_thickness=5.0)
    result = gateway.store(_write(tmp_path, gap + even))
    assert result.returncode == 0, result.stderr
    gateway.wait_until_idle()
    with hospital_context(world.first.hospital):
        assert list(StagedObject.objects.values_list("status", flat=True)) == ["stored"] * 8
        [finding] = ValidationFinding.objects.filter(code="SLICE_SPACING_INCONSISTENT")
        gap_series = pydicom.dcmread(io.BytesIO(gap[0])).SeriesInstanceUID
        assert finding.instance is not None and finding.instance.series.series_instance_uid == gap_series
        assert finding.staged.batch == StagedObject.objects.first().batch


def test_a_transfer_is_audited_without_patient_data(gateway, world, tmp_path):
    gateway.store(_write(tmp_path, make_ct_series(2, PatientName="Mingzi^Mimi", PatientID="P-SECRET")))
    gateway.wait_until_idle()
    [event] = _audit_events(Action.INSTANCES_RECEIVED)
    assert (event.event_id, event.action_code, event.outcome) == ("110104", "C", 0)
    assert event.hospital_id == world.first.hospital.pk
    assert (event.details["staged"], event.details["failed"], event.details["calling_ae_title"]) == (2, 0, "CT01")
    assert "P-SECRET" not in str(event.details) and "Mingzi" not in str(event.details)


def test_a_node_of_the_second_hospital_stores_into_the_second_only(gateway, world, tmp_path):
    series = make_ct_series(2, InstitutionName=SECOND_INSTITUTION)
    result = gateway.store(_write(tmp_path, series), calling="MR02")
    assert result.returncode == 0, result.stderr
    gateway.wait_until_idle()
    second, first = world.second.hospital, world.first.hospital
    with hospital_context(second):
        assert Instance.objects.filter(hospital=second).count() == 2
        assert set(StagedObject.objects.values_list("hospital_id", "status")) == {(second.pk, "stored")}
    with hospital_context(first):
        assert Instance.objects.count() == 0
        assert StagedObject.objects.count() == 0


def test_an_image_failing_validation_is_staged_and_rejected_and_the_server_keeps_serving(gateway, world, tmp_path):
    bad = make_ct_slice(PixelData=b"\x00" * 10)  # far shorter than 16 x 16 x 16 bits
    result = gateway.store(_write(tmp_path, [bad]))
    assert result.returncode == 0, result.stderr  # staged durably: success, then ingest refuses it
    gateway.wait_until_idle()
    with hospital_context(world.first.hospital):
        [staged] = StagedObject.objects.all()
        assert (staged.source, staged.status, staged.error_code) == ("dimse", "rejected", "PIXEL_LENGTH_MISMATCH")
        assert Instance.objects.count() == 0
    assert gateway.echo().returncode == 0


@pytest.mark.parametrize(
    ("corrupt", "error_code"),
    [
        (lambda data: data[: len(data) - 300], "DICOM_TRUNCATED"),
        (lambda data: data[:400] + b"\xff" * 64, "DICOM_MALFORMED"),
    ],
    ids=["truncated", "garbage"],
)
def test_broken_bytes_on_the_wire_are_rejected_and_the_server_keeps_serving(
    gateway, world, tmp_path, corrupt, error_code
):
    [path] = _write(tmp_path, [corrupt(make_ct_slice())])
    assert _send_with_pynetdicom(gateway.port, path) == 0x0000
    gateway.wait_until_idle()
    with hospital_context(world.first.hospital):
        [staged] = StagedObject.objects.all()
        assert (staged.status, staged.error_code) == ("rejected", error_code)
    assert gateway.echo().returncode == 0


def test_an_object_over_the_size_limit_is_refused_with_out_of_resources(gateway, world, tmp_path, settings):
    settings.DICOM_MAX_OBJECT_SIZE = 1000
    [path] = _write(tmp_path, [make_ct_slice()])
    assert _send_with_pynetdicom(gateway.port, path) == 0xA700
    gateway.wait_until_idle()
    with hospital_context(world.first.hospital):
        assert StagedObject.objects.count() == 0
    [event] = _audit_events(Action.INSTANCES_RECEIVED)
    assert (event.outcome, event.details["staged"], event.details["failed"]) == (4, 0, 1)


# --- TLS ---------------------------------------------------------------------------------


def _certificate(subject: str, key, issuer_key=None, issuer: x509.Certificate | None = None, *, ca: bool = False):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture
def pki(tmp_path) -> dict[str, str]:
    """A throwaway CA, a gateway certificate and a modality's client certificate, as PEM files."""
    files: dict[str, str] = {}

    def save(label: str, key, certificate: x509.Certificate) -> None:
        key_path, cert_path = tmp_path / f"{label}.key", tmp_path / f"{label}.crt"
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        files[f"{label}_key"], files[f"{label}_cert"] = str(key_path), str(cert_path)

    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _certificate("Yingxiang Test CA", ca_key, ca=True)
    save("ca", ca_key, ca)
    for label in ("gateway", "modality"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        save(label, key, _certificate(label, key, ca_key, ca))
    return files


@pytest.fixture
def tls_gateway(start_gateway, pki) -> Gateway:
    context = tls_context(
        cert_file=pki["gateway_cert"], key_file=pki["gateway_key"], ca_file=pki["ca_cert"], handshake_timeout=1.0
    )
    return start_gateway(ssl_context=context)


def _tls_options(pki: dict[str, str]) -> list[str]:
    return ["+tls", pki["modality_key"], pki["modality_cert"], "+cf", pki["ca_cert"]]


def test_echo_over_tls_with_a_client_certificate_succeeds(tls_gateway, pki):
    result = tls_gateway.echo(*_tls_options(pki))
    assert result.returncode == 0, result.stderr


def test_tls_without_a_client_certificate_fails(tls_gateway, pki):
    assert tls_gateway.echo("+tla", "+cf", pki["ca_cert"]).returncode != 0


def test_a_plain_connection_to_the_tls_port_fails(tls_gateway):
    assert tls_gateway.echo().returncode != 0


def test_a_silent_client_does_not_block_the_tls_port(tls_gateway, pki):
    with socket.create_connection(("127.0.0.1", tls_gateway.port)):
        # Without a handshake timeout (1 s here) the silent connection holds the accept loop for good.
        result = tls_gateway.echo(*_tls_options(pki), timeout=15)
    assert result.returncode == 0, result.stderr


def test_storescu_over_tls_stores(tls_gateway, pki, world, tmp_path):
    result = tls_gateway.store(_write(tmp_path, make_ct_series(2)), *_tls_options(pki))
    assert result.returncode == 0, result.stderr
    tls_gateway.wait_until_idle()
    with hospital_context(world.first.hospital):
        assert Instance.objects.count() == 2


@pytest.mark.parametrize(
    "options",
    [["--tls-cert", "gateway.crt"], ["--tls-ca", "ca.crt"], ["--ae-title", "A-TITLE-LONGER-THAN-16"]],
    ids=["cert-without-key", "ca-without-cert", "long-ae-title"],
)
def test_the_command_refuses_incomplete_options_before_listening(options):
    with pytest.raises(CommandError):
        call_command("dicom_gateway", *options)


# --- Registering nodes in the back office -------------------------------------------------


def test_a_hospital_admin_registers_a_node_for_their_hospital_and_it_is_audited(client, sign_in, world):
    sign_in(world.first["hospital_admin"])
    response = client.post(reverse("admin:imaging_dicomnode_add"), {"ae_title": " US03 ", "description": "B超"})
    assert response.status_code == 302
    with hospital_context(world.first.hospital):
        node = DicomNode.objects.get(ae_title="US03")
    assert node.hospital_id == world.first.hospital.pk
    [event] = _audit_events(Action.DICOM_NODE_REGISTERED)
    assert (event.event_type, event.action_code, event.object_id) == ("110129", "C", "US03")


def test_an_ae_title_registered_by_another_hospital_is_refused_without_an_error_page(client, sign_in, world, nodes):
    sign_in(world.first["hospital_admin"])
    response = client.post(reverse("admin:imaging_dicomnode_add"), {"ae_title": "MR02", "description": ""})
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["ae_title"]


def test_a_hospital_admin_gets_404_for_the_other_hospitals_node(client, sign_in, world, nodes):
    with hospital_context(world.second.hospital):
        other = DicomNode.objects.get(ae_title="MR02")
    sign_in(world.first["hospital_admin"])
    response = client.get(reverse("admin:imaging_dicomnode_changelist"))
    assert [node.ae_title for node in response.context["cl"].result_list] == ["CT01"]
    assert client.get(reverse("admin:imaging_dicomnode_change", args=[other.pk])).status_code == 404


def test_a_technologist_cannot_reach_the_node_screens(client, sign_in, world):
    sign_in(world.first["technologist"])
    assert client.get(reverse("admin:imaging_dicomnode_changelist")).status_code == 403
