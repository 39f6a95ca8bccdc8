"""The DICOM network gateway: a C-STORE and C-ECHO SCP in front of the one ingest pipeline.

Association policy: the calling AE title must be a registered ``DicomNode`` of an active hospital,
and the called AE title this gateway's own; that node's hospital is the tenant of everything
received on the association. Anything else is refused with A-ASSOCIATE-RJ and audited.

Each object received by C-STORE is written durably to staging (``staged_object_create``) before
success is answered; its ingest is queued when the staging row commits, so a crash after the
answer loses nothing (``ingest_retry_stale`` picks it up). What the sender learns is therefore
"staged"; validation outcomes are recorded on the staged object for QC.

pynetdicom runs each association in a thread of its own and calls these handlers there, so each
association has its own database connection, closed when the association ends.
"""

import io
import logging
import ssl
import threading
import time
import uuid
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any, BinaryIO

from django.conf import settings
from django.db import connections, transaction
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    RLELossless,
)
from pynetdicom import AE, AllStoragePresentationContexts, _config, dimse_messages, evt
from pynetdicom.association import Association
from pynetdicom.sop_class import Verification  # type: ignore[attr-defined]
from pynetdicom.transport import ThreadedAssociationServer

from apps.audit.services import audit_record
from apps.audit.vocabulary import Action, EntryPoint, Outcome
from apps.imaging.dicom.rules import LOSSY_TRANSFER_SYNTAXES
from apps.imaging.ingest import staged_object_create
from apps.imaging.models import DicomNode, StagedObject
from apps.imaging.spool import SealedSpool
from apps.imaging.staging import StagingTooLarge
from apps.imaging.tasks import ingest_staged_object, series_review_queue
from apps.tenants.context import bind_ae_title, hospital_context
from apps.tenants.models import Hospital

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 11112
DEFAULT_AE_TITLE = "YINGXIANG"
TLS_HANDSHAKE_TIMEOUT = 10.0

# C-STORE statuses (PS3.4 Table B.2-1).
SUCCESS = 0x0000
OUT_OF_RESOURCES = 0xA700
CANNOT_UNDERSTAND = 0xC000

# A-ASSOCIATE-RJ result, source and reason (PS3.8 9.3.4).
_REJECTED_PERMANENT = 0x01
_REJECTED_TRANSIENT = 0x02
_SERVICE_USER = 0x01
_NO_REASON = 0x01
_CALLING_AE_NOT_RECOGNISED = 0x03
_CALLED_AE_NOT_RECOGNISED = 0x07

_CHUNK_SIZE = 1024 * 1024

# pynetdicom accepts, per presentation context, the first of these that the sender also offers:
# native encodings first, then lossless compression, lossy last. Lossy syntaxes are accepted at
# all because a hospital's validation policy may allow them for some modalities (ultrasound,
# endoscopy); ingest refuses them everywhere else.
JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"
ACCEPTED_TRANSFER_SYNTAXES: tuple[str, ...] = (
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    JPEGLosslessSV1,
    JPEGLossless,
    JPEGLSLossless,
    JPEG2000Lossless,
    JPEG2000MCLossless,
    HTJ2KLossless,
    HTJ2KLosslessRPCL,
    JPEG_XL_LOSSLESS,
    RLELossless,
    *sorted(LOSSY_TRANSFER_SYNTAXES, key=lambda uid: [int(part) for part in uid.split(".")]),
)


@dataclass
class _Peer:
    """What the gateway knows about one association. Nothing about patients."""

    calling_ae_title: str
    called_ae_title: str
    address: str
    hospital: Hospital | None = None
    batch: uuid.UUID = field(default_factory=uuid.uuid4)
    staged: int = 0
    failed: int = 0

    def describe(self) -> dict[str, Any]:
        return {
            "calling_ae_title": self.calling_ae_title,
            "called_ae_title": self.called_ae_title,
            "peer_address": self.address,
        }


@dataclass(frozen=True)
class _Refusal:
    reason: str
    diagnostic: int


def registered_node(calling_ae_title: str) -> DicomNode | None:
    """The node registered under ``calling_ae_title``, with its hospital, or None.

    Row-level security lets this one row be read before any hospital is known, and no other.
    """
    with transaction.atomic():
        bind_ae_title(calling_ae_title)
        return DicomNode.objects.select_related("hospital").filter(ae_title=calling_ae_title).first()


class _Gateway:
    """The event handlers of one listening gateway, and the associations it has admitted."""

    def __init__(self, ae_title: str) -> None:
        self.ae_title = ae_title
        self._peers: weakref.WeakKeyDictionary[Association, _Peer] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def handlers(self) -> list[Any]:
        return [
            (evt.EVT_REQUESTED, self.on_requested),
            (evt.EVT_C_STORE, self.on_store),
            (evt.EVT_RELEASED, self.on_ended),
            (evt.EVT_ABORTED, self.on_ended),
        ]

    def on_requested(self, event: evt.Event) -> None:
        """Admit or refuse an association before anything is negotiated.

        pynetdicom logs and ignores an exception raised by this handler, which would admit the
        association; so any failure refuses it instead (transiently: the sender may retry).
        """
        assoc = event.assoc
        address = str(assoc.requestor.address)
        try:
            request = assoc.requestor.primitive
            assert request is not None  # set by pynetdicom before EVT_REQUESTED
            peer = _Peer(
                calling_ae_title=str(request.calling_ae_title).strip(),
                called_ae_title=str(request.called_ae_title).strip(),
                address=address,
            )
            refusal = self._admit(peer)
            if refusal is None:
                with self._lock:
                    self._peers[assoc] = peer
                return
            logger.warning("DICOM association from %s refused: %s", peer.address, refusal.reason)
            # Recorded before the answer, so the event exists by the time the sender hears "no".
            audit_record(
                action=Action.DICOM_ASSOCIATION_REFUSED,
                outcome=Outcome.MINOR_FAILURE,
                hospital=peer.hospital,
                entry_point=EntryPoint.DIMSE,
                actor_name=peer.calling_ae_title,
                object_type="dicom_node",
                object_id=peer.calling_ae_title,
                details={"reason": refusal.reason, **peer.describe()},
            )
            assoc.acse.send_reject(_REJECTED_PERMANENT, _SERVICE_USER, refusal.diagnostic)
        except Exception:
            logger.exception("DICOM association from %s refused: it could not be checked", address)
            if not assoc.is_rejected:
                assoc.acse.send_reject(_REJECTED_TRANSIENT, _SERVICE_USER, _NO_REASON)
        finally:
            if assoc.is_rejected:
                _close_connections(assoc)
                # As pynetdicom does after its own rejections: wait until the A-ASSOCIATE-RJ is
                # sent, or the connection would be closed under it.
                assoc.kill()

    def _admit(self, peer: _Peer) -> _Refusal | None:
        """Set the peer's hospital from its registered node, or say why it is refused."""
        node = registered_node(peer.calling_ae_title) if peer.calling_ae_title else None
        if node is None:
            return _Refusal("calling_ae_title_unknown", _CALLING_AE_NOT_RECOGNISED)
        peer.hospital = node.hospital
        if not node.hospital.is_active:
            return _Refusal("hospital_suspended", _CALLING_AE_NOT_RECOGNISED)
        if peer.called_ae_title != self.ae_title:
            return _Refusal("called_ae_title_wrong", _CALLED_AE_NOT_RECOGNISED)
        return None

    def on_store(self, event: evt.Event) -> int:
        """Stage one received object durably and queue its ingest; answer once it is on disk."""
        with self._lock:
            peer = self._peers.get(event.assoc)
        if peer is None or peer.hospital is None:  # Never: on_requested refuses before any C-STORE.
            return CANNOT_UNDERSTAND
        hospital = peer.hospital
        try:
            with hospital_context(hospital):
                staged = staged_object_create(
                    hospital=hospital, source=StagedObject.Source.DIMSE, chunks=_received_part10(event),
                    batch=peer.batch,
                )  # fmt: skip
                # robust: the object is staged whatever the broker says; ingest_retry_stale re-queues it.
                transaction.on_commit(
                    partial(ingest_staged_object.delay, hospital.pk, str(staged.public_id)), robust=True
                )
        except StagingTooLarge:
            peer.failed += 1
            logger.warning("C-STORE from %r refused: larger than DICOM_MAX_OBJECT_SIZE", peer.calling_ae_title)
            return OUT_OF_RESOURCES
        except Exception:
            peer.failed += 1
            logger.exception("C-STORE from %r could not be staged", peer.calling_ae_title)
            return CANNOT_UNDERSTAND
        peer.staged += 1
        return SUCCESS

    def on_ended(self, event: evt.Event) -> None:
        """Record what the association delivered, then let go of its database connection."""
        with self._lock:
            peer = self._peers.pop(event.assoc, None)
        try:
            if peer is not None and (peer.staged or peer.failed):
                audit_record(
                    action=Action.INSTANCES_RECEIVED,
                    outcome=Outcome.MINOR_FAILURE if peer.failed else Outcome.SUCCESS,
                    hospital=peer.hospital,
                    entry_point=EntryPoint.DIMSE,
                    actor_name=peer.calling_ae_title,
                    object_type="dicom_node",
                    object_id=peer.calling_ae_title,
                    details={"batch": str(peer.batch), "staged": peer.staged, "failed": peer.failed, **peer.describe()},
                )
            if peer is not None and peer.staged and peer.hospital is not None:
                # Series-level rules once the association's objects are ingested.
                series_review_queue(hospital=peer.hospital, batch=peer.batch)
        except Exception:
            logger.exception("The transfer from %r could not be audited", peer.calling_ae_title if peer else "?")
        finally:
            _close_connections(event.assoc)


class _SealedDataSetFile:
    """What pynetdicom writes a C-STORE data set to as it arrives, in place of its plaintext
    ``NamedTemporaryFile`` (``STORE_RECV_CHUNKED_DATASET``): the same bytes, held in memory up to
    ``DICOM_GATEWAY_IN_MEMORY_MAX_SIZE`` (a CT or MR slice: no file, no encryption and decryption
    before staging), beyond that sealed in a :class:`SealedSpool`, an anonymous file that nothing
    left behind by an aborted association or a crash can be read from.

    pynetdicom uses ``write``, ``file.flush``, ``close`` and ``name``. It unlinks ``name`` after the
    handler and ignores the error: ``name`` is a random relative name that no file has.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._memory: bytearray | None = bytearray()
        self._spool: SealedSpool | None = None
        self.name = f"sealed-c-store-data-set-{uuid.uuid4().hex}.absent"
        self.file = self

    def write(self, data: bytes) -> int:
        if self._memory is not None:
            if len(self._memory) + len(data) <= settings.DICOM_GATEWAY_IN_MEMORY_MAX_SIZE:
                self._memory += data
                return len(data)
            self._spool = SealedSpool()
            self._spool.write(bytes(self._memory))
            self._memory = None
        assert self._spool is not None
        return self._spool.write(data)

    def flush(self) -> None:
        pass

    def plaintext(self) -> BinaryIO:
        """The Part 10 bytes written so far, as a seekable reader; call once, when all have arrived."""
        if self._spool is None:
            memory, self._memory = self._memory or bytearray(), None
            return io.BytesIO(memory)
        return self._spool.finish()

    def close(self) -> None:
        self._memory = None
        if self._spool is not None:
            self._spool.close()


def _received_part10(event: evt.Event) -> Iterator[bytes]:
    """The object as a Part 10 file: File Meta Information made from the request and its accepted
    transfer syntax (a modality sends no file meta over the network), then the data set bytes
    exactly as they arrived, never decoded here."""
    if not _config.STORE_RECV_CHUNKED_DATASET:
        yield event.encoded_dataset()
        return
    received = getattr(event.request, "_dataset_file", None)
    if not isinstance(received, _SealedDataSetFile):
        # pynetdicom wrote the data set somewhere else, in plaintext: refuse rather than stage it.
        raise RuntimeError("The received data set was not spooled sealed; gateway_start sets that up.")
    with received.plaintext() as reader:
        while chunk := reader.read(_CHUNK_SIZE):
            yield chunk


def _close_connections(assoc: Association) -> None:
    # Django connections belong to the thread that opened them; an association aborted from
    # elsewhere (at shutdown) leaves its own to be closed with its thread.
    if threading.current_thread() is assoc:
        connections.close_all()


class _TLSServerContext(ssl.SSLContext):
    """Bounds the TLS handshake, which pynetdicom performs in its accept loop: a client that
    connects and stays silent would otherwise keep every other sender from connecting."""

    handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT

    def wrap_socket(self, sock: Any, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        sock.settimeout(self.handshake_timeout)
        try:
            wrapped = super().wrap_socket(sock, *args, **kwargs)
        except OSError:
            sock.close()
            raise
        wrapped.settimeout(None)
        return wrapped


def tls_context(
    *, cert_file: str, key_file: str, ca_file: str | None = None, handshake_timeout: float = TLS_HANDSHAKE_TIMEOUT
) -> ssl.SSLContext:
    """A server TLS context (TLS 1.2 or later); with ``ca_file``, senders must present a
    certificate issued by that CA."""
    context = _TLSServerContext(ssl.PROTOCOL_TLS_SERVER)
    context.handshake_timeout = handshake_timeout
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_file, key_file)
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
        context.verify_mode = ssl.CERT_REQUIRED
    return context


def _application_entity(ae_title: str) -> AE:
    ae = AE(ae_title=ae_title)
    ae.add_supported_context(Verification)
    for context in AllStoragePresentationContexts:
        assert context.abstract_syntax is not None
        ae.add_supported_context(context.abstract_syntax, list(ACCEPTED_TRANSFER_SYNTAXES))
    return ae


def gateway_start(
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    ae_title: str = DEFAULT_AE_TITLE,
    ssl_context: ssl.SSLContext | None = None,
) -> ThreadedAssociationServer:
    """Start listening in background threads; stop with ``gateway_stop``.

    Received data sets go to a temporary file rather than memory (whole-slide images reach
    gigabytes), sealed (``_SealedDataSetFile``), never in plaintext as pynetdicom writes them; it
    is deleted once the handler has copied it to staging.
    """
    _config.STORE_RECV_CHUNKED_DATASET = True
    # pynetdicom 3 creates that file with this name, and only for C-STORE data sets.
    dimse_messages.NamedTemporaryFile = _SealedDataSetFile  # type: ignore[attr-defined,misc,assignment]
    gateway = _Gateway(ae_title)
    server = _application_entity(ae_title).start_server(
        (host, port), block=False, ssl_context=ssl_context, evt_handlers=gateway.handlers()
    )
    assert server is not None
    return server


def gateway_stop(server: ThreadedAssociationServer, *, grace_seconds: float = 30.0) -> None:
    """Stop accepting associations, give running ones ``grace_seconds`` to finish, abort the rest."""
    server.shutdown()
    deadline = time.monotonic() + grace_seconds
    while server.active_associations and time.monotonic() < deadline:
        time.sleep(0.05)
    for assoc in server.active_associations:
        assoc.abort()
