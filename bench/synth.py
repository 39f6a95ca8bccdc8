"""Synthetic DICOM for the benchmark: made-up patients, never real data.

Built on tests/imaging/dicom_factory.py (make_instance, to_part10_bytes); pixel data comes from
numpy so that a 300-slice 512x512 CT is generated in seconds and renders as a plausible image.
"""

import os
import random
import struct
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.imaging.dicom_factory import make_instance, to_part10_bytes  # noqa: E402

INSTITUTION = "BENCH GENERAL HOSPITAL"
EQUIPMENT = {"InstitutionName": INSTITUTION, "Manufacturer": "SYNTHETIC VENDOR", "StationName": "BENCHCT01"}
# Studies of part (b) are spread evenly over these 60 months, so a one-month StudyDate range
# matches about n/60 of them (83 for 5,000).
FIRST_MONTH = date(2020, 1, 1)
MONTHS = 60
STUDIES_PER_PATIENT = 2


@dataclass
class Series:
    study_uid: str
    series_uid: str
    sop_uids: list[str]
    instances: list[bytes]

    @property
    def nbytes(self) -> int:
        return sum(len(i) for i in self.instances)


@dataclass
class SmallStudies:
    study_uids: list[str]
    patient_ids: list[str]
    instances: list[bytes]

    @property
    def nbytes(self) -> int:
        return sum(len(i) for i in self.instances)


def _phantom(size: int, z: float, rng: np.random.Generator) -> np.ndarray:
    """A 12-bit CT-like slice: air, a body ellipse, two 'lungs' and some noise."""
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    image = np.full((size, size), 24, dtype=np.float32)  # air, about -1000 HU with intercept -1024
    body = (x / 0.85) ** 2 + (y / 0.65) ** 2 < 1
    image[body] = 1064  # soft tissue, about +40 HU
    shift = 0.05 * np.sin(z / 40)
    for cx in (-0.4, 0.4):
        lung = ((x - cx - shift) / 0.28) ** 2 + (y / 0.42) ** 2 < 1
        image[lung] = 224  # about -800 HU
    spine = (x**2 + (y - 0.45) ** 2) < 0.01
    image[spine] = 2000
    image += rng.normal(0, 12, image.shape)
    return np.clip(image, 0, 4095).astype("<u2")


def ct_series(count: int, *, size: int = 512, seed: int = 1) -> Series:
    """One axial CT series of ``count`` 16-bit ``size`` x ``size`` slices (Explicit VR Little Endian)."""
    rng = np.random.default_rng(seed)
    study_uid, series_uid = str(generate_uid()), str(generate_uid())
    # A handful of distinct slices, reused: generating 300 noisy phantoms would cost more than it shows.
    pool = [_phantom(size, z * 5.0, rng).tobytes() for z in range(min(count, 8))]
    instances: list[bytes] = []
    sop_uids: list[str] = []
    for index in range(count):
        sop_uid = str(generate_uid())
        ds = make_instance(
            "CT",
            StudyInstanceUID=study_uid,
            SeriesInstanceUID=series_uid,
            SOPInstanceUID=sop_uid,
            PatientID="BENCHCT0001",
            PatientName="Jizhun^Ceshi",
            AccessionNumber="BENCHCT0001",
            StudyDate="20250102",
            StudyDescription="Benchmark CT",
            Rows=size,
            Columns=size,
            InstanceNumber=index + 1,
            ImagePositionPatient=[-100.0, -100.0, index * 1.0],
            SliceLocation=index * 1.0,
            SliceThickness=1.0,
            WindowCenter=40,
            WindowWidth=400,
            PixelData=pool[index % len(pool)],
            **EQUIPMENT,
        )
        instances.append(to_part10_bytes(ds))
        sop_uids.append(sop_uid)
    return Series(study_uid, series_uid, sop_uids, instances)


def small_studies(count: int, *, size: int = 64, seed: int = 2, patient_prefix: str = "BENCH") -> SmallStudies:
    """``count`` one-instance CT studies, two per patient, StudyDate spread over 60 months; the
    patients' IDs are ``patient_prefix`` and a number."""
    rng = random.Random(seed)
    pixels = np.random.default_rng(seed).integers(0, 4096, size * size, dtype="<u2").tobytes()
    instances: list[bytes] = []
    study_uids: list[str] = []
    patient_ids: list[str] = []
    span = (date(FIRST_MONTH.year + MONTHS // 12, 1, 1) - FIRST_MONTH).days
    for index in range(count):
        patient = f"{patient_prefix}{index // STUDIES_PER_PATIENT:06d}"
        study_uid = str(generate_uid())
        day = FIRST_MONTH + timedelta(days=(index * span) // max(count, 1))
        ds = make_instance(
            "CT",
            StudyInstanceUID=study_uid,
            PatientID=patient,
            PatientName=f"Huanzhe^{index // STUDIES_PER_PATIENT:06d}",
            PatientBirthDate=f"{1940 + (index // STUDIES_PER_PATIENT) % 60}0101",  # one identity per PatientID
            AccessionNumber=f"A{index:09d}",
            StudyDate=day.strftime("%Y%m%d"),
            StudyTime=f"{8 + rng.randrange(10):02d}{rng.randrange(60):02d}00",
            StudyID=str(index),
            Rows=size,
            Columns=size,
            PixelData=pixels,
            **EQUIPMENT,
        )
        instances.append(to_part10_bytes(ds))
        study_uids.append(study_uid)
        if index % STUDIES_PER_PATIENT == 0:
            patient_ids.append(patient)
    return SmallStudies(study_uids, patient_ids, instances)


def month_ranges() -> list[str]:
    """The 60 one-month StudyDate ranges (``YYYYMMDD-YYYYMMDD``) that part (b) covers."""
    ranges = []
    for m in range(MONTHS):
        year, month = FIRST_MONTH.year + m // 12, m % 12 + 1
        start = date(year, month, 1)
        end = date(year + month // 12, month % 12 + 1, 1) - timedelta(days=1)
        ranges.append(f"{start:%Y%m%d}-{end:%Y%m%d}")
    return ranges


def large_object(path: str | os.PathLike[str], *, megabytes: int) -> tuple[int, str, str, str]:
    """A single multi-frame 16-bit CT of about ``megabytes`` MiB, written as a sparse file.

    1024 x 1024 frames of 2 MiB each; Pixel Data is a hole that is never in memory here.
    Returns (size, study uid, series uid, sop uid).
    """
    rows = columns = 1024
    frames = max(1, megabytes // 2)
    length = rows * columns * frames * 2
    study_uid, series_uid, sop_uid = generate_uid(), generate_uid(), generate_uid()
    ds = make_instance(
        "CT",
        Rows=rows,
        Columns=columns,
        NumberOfFrames=frames,
        PixelData=None,
        StudyInstanceUID=study_uid,
        SeriesInstanceUID=series_uid,
        SOPInstanceUID=sop_uid,
        PatientID="BENCHBIG01",
        StudyDate="20250103",
        **EQUIPMENT,
    )
    header = to_part10_bytes(ds)
    element = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OW", 0, length)
    with open(path, "wb") as stream:
        stream.write(header + element)
        stream.truncate(len(header) + len(element) + length)
    return os.path.getsize(path), study_uid, series_uid, sop_uid
