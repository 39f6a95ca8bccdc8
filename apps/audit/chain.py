"""The keyed hash that links audit events, and the check of whole chains."""

import hashlib
import hmac
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from django.conf import settings
from django.utils.translation import gettext as _

from apps.audit.models import AuditChainHead, AuditEvent

PLATFORM_CHAIN = "platform"


def chain_name(hospital_id: int | None) -> str:
    return f"hospital:{hospital_id}" if hospital_id else PLATFORM_CHAIN


def chain_hospital_id(chain: str) -> int | None:
    """The hospital whose chain this is (None for the platform's): ``chain_name`` read back."""
    return int(chain.removeprefix("hospital:")) if chain.startswith("hospital:") else None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def event_hash(event: AuditEvent) -> str:
    """HMAC-SHA256 over every stored field of the event, including its predecessor's hash."""
    content = {
        "public_id": str(event.public_id),
        "chain": event.chain,
        "sequence": event.sequence,
        "occurred_at": event.occurred_at.astimezone(UTC).isoformat(),
        "hospital_id": event.hospital_id,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "actor_role": event.actor_role,
        "action": event.action,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "action_code": event.action_code,
        "outcome": int(event.outcome),
        "object_type": event.object_type,
        "object_id": event.object_id,
        "entry_point": event.entry_point,
        "ip_address": event.ip_address or None,
        "user_agent": event.user_agent,
        "details": event.details,
        "previous_hash": event.previous_hash,
    }
    key = settings.AUDIT_CHAIN_KEY.encode()
    return hmac.new(key, canonical_json(content).encode(), hashlib.sha256).hexdigest()


def head_signature(chain: str, sequence: int, last_hash: str) -> str:
    key = f"chain-head:{settings.AUDIT_CHAIN_KEY}".encode()
    return hmac.new(key, f"{chain}\x1f{sequence}\x1f{last_hash}".encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    chain: str
    sequence: int
    event_public_id: str
    reason: str

    def __str__(self) -> str:
        return f"{self.chain}: event {self.event_public_id} (sequence {self.sequence}): {self.reason}"


def verify_chain(chain: str) -> ChainProblem | None:
    """Return the first problem in one chain, or None if it is intact.

    The caller must be able to read the chain (the audit admin's platform scope).
    """
    expected_sequence = 1
    previous_hash = ""
    last: AuditEvent | None = None
    for event in AuditEvent.objects.filter(chain=chain).order_by("sequence").iterator(chunk_size=2000):
        identity = (chain, event.sequence, str(event.public_id))
        if event.sequence != expected_sequence:
            missing = f"{expected_sequence}..{event.sequence - 1}"
            reason = _("events before it are missing (sequence %(missing)s)") % {"missing": missing}
            return ChainProblem(*identity, reason)
        if event.previous_hash != previous_hash:
            return ChainProblem(*identity, _("does not follow its predecessor (reordered, or the one before altered)"))
        if not hmac.compare_digest(event_hash(event), event.hash):
            return ChainProblem(*identity, _("its content was altered"))
        previous_hash = event.hash
        expected_sequence += 1
        last = event
    head = AuditChainHead.objects.filter(chain=chain).first()
    if (
        head is not None
        and head.sequence
        and not hmac.compare_digest(head.signature, head_signature(chain, head.sequence, head.hash))
    ):
        sequence = last.sequence if last else 0
        return ChainProblem(chain, sequence, str(last.public_id) if last else "-", _("the chain head was altered"))
    if head is not None and (last is None or head.sequence != last.sequence or head.hash != last.hash):
        sequence = last.sequence if last else 0
        public_id = str(last.public_id) if last else "-"
        reason = _("events after it are missing (the chain had %(count)d)") % {"count": head.sequence}
        return ChainProblem(chain, sequence, public_id, reason)
    return None


def all_chains() -> list[str]:
    names = set(AuditEvent.objects.values_list("chain", flat=True).distinct())
    names.update(AuditChainHead.objects.values_list("chain", flat=True))
    return sorted(names)
