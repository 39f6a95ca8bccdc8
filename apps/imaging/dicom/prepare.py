"""The half of ingesting an object that needs neither the database nor a key: parse it, run the
per-instance rules and build its metadata document. Helper processes do this for STOW-RS requests
(apps.imaging.parse_pool), so this module and what it imports stay free of Django."""

import io
from dataclasses import dataclass, replace
from typing import BinaryIO

from pydicom.dataset import Dataset

from apps.imaging.dicom.header import metadata_document
from apps.imaging.dicom.parse import ParsedInstance, parse_part10
from apps.imaging.dicom.rules import Finding, ValidationPolicy, validate_instance


@dataclass(frozen=True)
class Prepared:
    """What ``prepare`` found. ``parsed`` comes without its pydicom dataset (the header is in
    ``document``), so that it is small to send between processes."""

    parsed: ParsedInstance
    findings: tuple[Finding, ...]
    document: str


def describe(source: BinaryIO, policy: ValidationPolicy) -> tuple[ParsedInstance, list[Finding], str]:
    """Parse a Part 10 stream, run the per-instance rules and build its metadata document. Raises
    what parse_part10, validate_instance and pydicom raise."""
    parsed = parse_part10(source)
    return parsed, validate_instance(parsed, policy=policy), metadata_document(parsed)


def prepare(data: bytes, policy: ValidationPolicy) -> Prepared:
    """``describe`` for bytes held in memory, packed to be sent between processes."""
    parsed, findings, document = describe(io.BytesIO(data), policy)
    return Prepared(replace(parsed, dataset=Dataset()), tuple(findings), document)


def prepare_or_none(data: bytes, policy: ValidationPolicy) -> Prepared | None:
    """``prepare`` as a helper process does it: None if it raised. The caller then does the work
    itself, where the failure is handled (and logged) as ingest always does."""
    try:
        return prepare(data, policy)
    except Exception:  # noqa: BLE001 - reported by redoing the work in the caller
        return None
