"""Writing and reading the audit trail. Every other app records events through ``audit_record``."""

import ipaddress
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.http import HttpRequest
from django.utils import timezone
from django.utils.ipv6 import clean_ipv6_address

from apps.audit.chain import (
    ChainProblem,
    all_chains,
    canonical_json,
    chain_name,
    event_hash,
    head_signature,
    verify_chain,
)
from apps.audit.models import AuditChainHead, AuditEvent
from apps.audit.vocabulary import DICOM_EVENTS, Action, EntryPoint, Outcome
from apps.tenants.context import activate_hospital, bind_new_row, current_hospital, platform_scope, reset
from apps.tenants.models import Hospital


def client_ip(request: HttpRequest) -> str | None:
    """The client address. X-Forwarded-For is believed only behind a configured proxy."""
    raw = request.META.get("REMOTE_ADDR", "")
    if getattr(settings, "AUDIT_TRUST_X_FORWARDED_FOR", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            raw = forwarded.split(",")[-1].strip()
    try:
        address = ipaddress.ip_address(raw)
    except ValueError:
        return None
    # Normalised as Django's field and PostgreSQL's inet give it back, so the hash verifies.
    return clean_ipv6_address(str(address)) if address.version == 6 else str(address)


def _scrub(value: Any) -> Any:
    """PostgreSQL text and jsonb refuse NUL characters; replace them rather than lose the event."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd")
    if isinstance(value, dict):
        return {_scrub(key): _scrub(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrub(item) for item in value]
    return value


@contextmanager
def _acting_for_event(hospital: Hospital | None) -> Iterator[None]:
    """Act for the event's chain while it is appended (inside the append's transaction).

    The database accepts an event only for the hospital the transaction acts for, or, for the
    platform chain, when it acts for none; ``audit_record`` is the one writer that may record
    across that line (a staff sign-in goes to the user's home hospital's chain before any
    hospital is chosen, an API refusal to the hospital named in the URL before its token is
    accepted), so it acts for the event's chain for the append only and restores the previous
    hospital afterwards.
    """
    previous = current_hospital()
    if (previous.pk if previous else None) == (hospital.pk if hospital else None):
        yield
        return
    activate_hospital(hospital)
    try:
        yield
    finally:
        if connection.needs_rollback:
            reset()  # the transaction is lost; its settings go with it
        else:
            activate_hospital(previous)


@contextmanager
def _append_transaction(hospital: Hospital | None) -> Iterator[None]:
    """The transaction an append runs in, acting for the event's chain.

    When the transaction already acts for that hospital (nearly always), the transaction itself,
    with no savepoint: an append that fails fails the whole unit of work (an access that cannot be
    recorded must not happen), so there is nothing to roll back to. Otherwise the switch of
    hospital sits between two savepoints: the inner one rolls back a failed append before the
    previous hospital is restored, inside the outer one.
    """
    previous = current_hospital()
    if (previous.pk if previous else None) == (hospital.pk if hospital else None):
        with transaction.atomic(savepoint=False):
            yield
        return
    with transaction.atomic(), _acting_for_event(hospital), transaction.atomic():
        yield


def _lock_head(chain: str) -> AuditChainHead:
    try:
        return AuditChainHead.objects.select_for_update().get(chain=chain)
    except AuditChainHead.DoesNotExist:
        try:
            with transaction.atomic():
                AuditChainHead.objects.create(chain=chain)
        except IntegrityError:
            pass  # Another transaction created it first; lock theirs.
        return AuditChainHead.objects.select_for_update().get(chain=chain)


def audit_record(
    *,
    action: Action,
    outcome: Outcome = Outcome.SUCCESS,
    request: HttpRequest | None = None,
    actor: Any = None,
    actor_name: str = "",
    actor_role: str = "",
    hospital: Hospital | None = None,
    entry_point: EntryPoint = EntryPoint.WEB,
    object_type: str = "",
    object_id: str = "",
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to its hospital's chain.

    ``details`` must never hold patient identifiers in clear (name, ID number, phone); give
    public ids instead. The actor defaults to the request's authenticated user.

    The row is inserted while acting for the event's own chain (``_acting_for_event``); any other
    insert into the audit trail for a hospital other than the transaction's is refused by the
    database.
    """
    request_user = getattr(request, "user", None)
    if actor is None and request_user is not None and request_user.is_authenticated:
        actor = request_user
    # Round-trip through JSON so what is hashed now is what the database gives back later.
    clean_details = _scrub(json.loads(canonical_json(details or {})))
    dicom = DICOM_EVENTS[action]
    chain = chain_name(hospital.pk if hospital else None)
    with _append_transaction(hospital):
        head = _lock_head(chain)
        event = AuditEvent(
            public_id=uuid.uuid4(),
            chain=chain,
            sequence=head.sequence + 1,
            occurred_at=timezone.now(),
            hospital=hospital,
            actor=actor,
            actor_name=_scrub(actor_name or (actor.get_username() if actor else ""))[:150],
            actor_role=actor_role[:32],
            action=action,
            event_id=dicom.event_id,
            event_type=dicom.event_type,
            action_code=dicom.action_code,
            outcome=outcome,
            object_type=object_type,
            object_id=_scrub(str(object_id))[:80],
            entry_point=entry_point,
            ip_address=client_ip(request) if request is not None else None,
            user_agent=_scrub(request.META.get("HTTP_USER_AGENT", "") if request is not None else "")[:300],
            details=clean_details,
            previous_hash=head.hash,
        )
        event.hash = event_hash(event)
        bind_new_row(str(event.public_id))
        event.save(force_insert=True)
        bind_new_row("")
        AuditChainHead.objects.filter(pk=head.pk).update(
            sequence=event.sequence, hash=event.hash, signature=head_signature(chain, event.sequence, event.hash)
        )
    return event


def audit_chains_verify() -> list[ChainProblem]:
    """Check every chain; return the first problem of each broken one."""
    problems = []
    with platform_scope("audit"):
        for chain in all_chains():
            problem = verify_chain(chain)
            if problem is not None:
                problems.append(problem)
    return problems
