from apps.imaging.models.archive import Instance, Patient, Series, Study
from apps.imaging.models.ingest import (
    DicomNode,
    IngestConflict,
    ReplacedInstanceVersion,
    StagedObject,
    ValidationFinding,
)
from apps.imaging.models.keys import HospitalKey
from apps.imaging.models.manifest import StudyManifest
from apps.imaging.models.policy import ValidationRuleSetting

__all__ = [
    "DicomNode",
    "HospitalKey",
    "IngestConflict",
    "Instance",
    "Patient",
    "ReplacedInstanceVersion",
    "Series",
    "StagedObject",
    "Study",
    "StudyManifest",
    "ValidationFinding",
    "ValidationRuleSetting",
]
