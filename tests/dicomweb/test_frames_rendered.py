"""WADO-RS Retrieve Frames and Retrieve Rendered: exact frame bytes, the VOI pipeline, per hospital."""

import io

import numpy as np
import pytest
from dicomweb_client.api import DICOMwebClient
from PIL import Image
from pydicom import Dataset, dcmread
from pydicom.sequence import Sequence
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

import apps.imaging.pixels
from apps.imaging.models import Instance
from apps.tenants.context import hospital_context
from tests.dicomweb.helpers import (
    api_get,
    ct_frames,
    encapsulated_ct,
    multiframe_ct,
    read_multipart,
    store_dataset,
    store_part10,
    token_for,
)
from tests.imaging.dicom_factory import element_offset, make_instance, to_part10_bytes

pytestmark = pytest.mark.django_db

OCTET_STREAM_PARTS = 'multipart/related; type="application/octet-stream"'


def _frames(response) -> list[bytes]:
    assert response.status_code == 200, getattr(response, "content", b"")
    return read_multipart(b"".join(response.streaming_content), response["Content-Type"])


def _png(response) -> np.ndarray:
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(response.content)))


def _linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1, computed independently of the code under test."""
    x = values.astype(np.float64)
    low, high = center - 0.5 - (width - 1) / 2, center - 0.5 + (width - 1) / 2
    y = ((x - (center - 0.5)) / (width - 1) + 0.5) * 255
    return np.rint(np.where(x <= low, 0, np.where(x > high, 255, y))).astype(np.uint8)


# --- Frames ---------------------------------------------------------------------------------------


def test_frames_are_the_exact_slices_of_pixel_data_in_the_order_asked(client, token):
    ds, values = multiframe_ct()
    url = store_dataset(client, token, ds)
    response = api_get(client, token, f"{url}/frames/3,1", accept_header=OCTET_STREAM_PARTS)
    assert response["Content-Type"].startswith('multipart/related; type="application/octet-stream"')
    assert "no-store" in response["Cache-Control"]
    third, first = _frames(response)
    frame_size = 16 * 16 * 2
    assert first == ds.PixelData[:frame_size] == values[0].astype("<u2").tobytes()
    assert third == ds.PixelData[2 * frame_size : 3 * frame_size]


def test_frame_parts_name_octet_stream_and_explicit_little_endian(client, token):
    ds, _values = multiframe_ct()
    url = store_dataset(client, token, ds)
    response = api_get(client, token, f"{url}/frames/2")
    body = b"".join(response.streaming_content)
    assert b"Content-Type: application/octet-stream; transfer-syntax=1.2.840.10008.1.2.1\r\n" in body


def test_a_frame_past_the_last_is_400(client, token):
    ds, _values = multiframe_ct()
    url = store_dataset(client, token, ds)
    response = api_get(client, token, f"{url}/frames/1,4")
    assert response.status_code == 400
    assert response.json()["error"] == "bad_request"
    assert "3 frame" in response.json()["detail"]


@pytest.mark.parametrize("frame_list", ["a,b", "0", "1,,2", "-1", "1;2"])
def test_a_malformed_frame_list_is_400(client, token, frame_list):
    ds, _values = multiframe_ct()
    url = store_dataset(client, token, ds)
    assert api_get(client, token, f"{url}/frames/{frame_list}").status_code == 400


def test_one_frame_reads_only_its_byte_range(client, token, settings, monkeypatch):
    # Small segments, so that the header walk crosses segments and "the whole object" is many of them.
    settings.STORAGE_SEGMENT_SIZE = 512
    ds, values = multiframe_ct(frames=8, Rows=64, Columns=64)
    url = store_dataset(client, token, ds)
    ranges = []
    real_open = apps.imaging.pixels.object_open

    def spying_open(**kwargs):
        ranges.append((kwargs.get("start", 0), kwargs.get("end")))
        return real_open(**kwargs)

    monkeypatch.setattr(apps.imaging.pixels, "object_open", spying_open)
    [frame] = _frames(api_get(client, token, f"{url}/frames/5"))
    assert frame == values[4].astype("<u2").tobytes()
    object_size = len(to_part10_bytes(ds))
    assert all(end is not None for _start, end in ranges)
    assert sum(end - start for start, end in ranges) < object_size / 4


@pytest.mark.parametrize("transfer_syntax", [None, ImplicitVRLittleEndian])
def test_sequences_and_large_values_before_pixel_data_are_walked_over_not_read(
    client, token, settings, monkeypatch, transfer_syntax
):
    settings.STORAGE_SEGMENT_SIZE = 512
    ds, values = multiframe_ct(frames=2)
    inner = Dataset()
    inner.ReferencedSOPClassUID = ds.SOPClassUID
    inner.ReferencedSOPInstanceUID = generate_uid()
    inner.is_undefined_length_sequence_item = True
    outer = Dataset()
    outer.ReferencedImageSequence = Sequence([inner])
    outer.is_undefined_length_sequence_item = True
    ds.SourceImageSequence = Sequence([outer])
    ds["SourceImageSequence"].is_undefined_length = True
    ds["SourceImageSequence"].value[0]["ReferencedImageSequence"].is_undefined_length = True
    blob = b"\xa5" * 64 * 1024
    ds.private_block(0x0009, "YINGXIANG TEST", create=True).add_new(0x01, "OB", blob)
    data = to_part10_bytes(ds) if transfer_syntax is None else to_part10_bytes(ds, transfer_syntax)
    url = store_part10(client, token, data, ds)
    blob_start = data.find(blob)
    ranges = []
    real_open = apps.imaging.pixels.object_open

    def spying_open(**kwargs):
        ranges.append((kwargs["start"], kwargs["end"]))
        return real_open(**kwargs)

    monkeypatch.setattr(apps.imaging.pixels, "object_open", spying_open)
    assert _frames(api_get(client, token, f"{url}/frames/2")) == [values[1].astype("<u2").tobytes()]
    # The windows are whole segments, so the blob's first and last segment may be read, no more.
    assert not [(start, end) for start, end in ranges if start < blob_start + 60 * 1024 and end > blob_start + 1024]


def test_big_endian_frames_are_returned_little_endian(client, token):
    values = ct_frames(2)
    ds = make_instance("CT", NumberOfFrames=2, PixelData=values.astype(">u2").tobytes())
    url = store_dataset(client, token, ds, ExplicitVRBigEndian)
    assert _frames(api_get(client, token, f"{url}/frames/2")) == [values[1].astype("<u2").tobytes()]


@pytest.mark.parametrize("transfer_syntax", [ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian])
def test_frames_of_other_native_transfer_syntaxes(client, token, transfer_syntax):
    ds, values = multiframe_ct()
    url = store_dataset(client, token, ds, transfer_syntax)
    frames = _frames(api_get(client, token, f"{url}/frames/2,3,1"))
    assert frames == [values[index].astype("<u2").tobytes() for index in (1, 2, 0)]


def test_one_bit_frames_that_start_mid_byte_are_realigned(client, token):
    # 3 x 5 pixels: 15 bits a frame, so frames 2 and 3 start inside a byte.
    bits = np.array([1, 0, 1, 1, 0, 0, 0, 1, 1, 1, 0, 1, 0, 1, 1] * 3, dtype=np.uint8)
    bits[15:30] = 1 - bits[15:30]
    packed = np.packbits(bits, bitorder="little").tobytes()
    ds = make_instance("MR", Rows=3, Columns=5, BitsAllocated=1, BitsStored=1, HighBit=0, NumberOfFrames=3,
                       PixelData=packed + b"\x00" * (len(packed) % 2))  # fmt: skip
    url = store_dataset(client, token, ds)
    frames = _frames(api_get(client, token, f"{url}/frames/1,2,3"))
    for index, frame in enumerate(frames):
        assert frame == np.packbits(bits[index * 15 : (index + 1) * 15], bitorder="little").tobytes()


def test_compressed_frames_are_returned_as_stored(client, token):
    codestreams = [b"\xff\xd8" + bytes([index]) * 30 + b"\xff\xd9" for index in range(1, 4)]
    data, ds = encapsulated_ct(codestreams)
    url = store_part10(client, token, data, ds)
    response = api_get(client, token, f"{url}/frames/3,2", accept_header='multipart/related; type="image/jpeg"')
    assert response["Content-Type"].startswith('multipart/related; type="image/jpeg"')
    assert _frames(response) == [codestreams[2], codestreams[1]]
    only_octets = api_get(client, token, f"{url}/frames/1", accept_header=OCTET_STREAM_PARTS)
    assert only_octets.status_code == 406
    assert only_octets.json()["error"] == "not_acceptable"


def test_native_frames_are_not_offered_as_jpeg(client, token):
    ds, _values = multiframe_ct()
    url = store_dataset(client, token, ds)
    response = api_get(client, token, f"{url}/frames/1", accept_header='multipart/related; type="image/jpeg"')
    assert response.status_code == 406


def _stored_instance(world, ds: Dataset) -> Instance:
    with hospital_context(world.first.hospital):
        return Instance.objects.get(sop_instance_uid=ds.SOPInstanceUID)


def _recorded_offset(world, ds: Dataset) -> int:
    offset = _stored_instance(world, ds).pixel_data_offset
    assert offset is not None
    return offset


def _spy_on_reads(monkeypatch) -> list[tuple[int, int]]:
    ranges: list[tuple[int, int]] = []
    real_open = apps.imaging.pixels.object_open

    def spying_open(**kwargs):
        ranges.append((kwargs["start"], kwargs["end"]))
        return real_open(**kwargs)

    monkeypatch.setattr(apps.imaging.pixels, "object_open", spying_open)
    return ranges


@pytest.mark.parametrize(
    ("transfer_syntax", "header_length"), [(ExplicitVRLittleEndian, 12), (ImplicitVRLittleEndian, 8)]
)
def test_ingest_records_where_native_pixel_data_starts_and_its_length(
    client, token, world, transfer_syntax, header_length
):
    ds, _values = multiframe_ct()
    data = to_part10_bytes(ds, transfer_syntax)
    store_part10(client, token, data, ds)
    instance = _stored_instance(world, ds)
    assert instance.pixel_data_offset == element_offset(data, "PixelData") + header_length
    assert instance.pixel_data_length == len(ds.PixelData)
    offset, length = instance.pixel_data_offset or 0, instance.pixel_data_length or 0
    assert data[offset : offset + length] == ds.PixelData


def test_ingest_records_where_encapsulated_pixel_data_starts_and_no_length(client, token, world):
    data, ds = encapsulated_ct([b"\xff\xd8\x01\x02\xff\xd9"])
    store_part10(client, token, data, ds)
    instance = _stored_instance(world, ds)
    assert instance.pixel_data_offset == element_offset(data, "PixelData") + 12
    assert instance.pixel_data_length is None
    # The value starts with the Basic Offset Table item (PS3.5 A.4).
    offset = instance.pixel_data_offset or 0
    assert data[offset : offset + 4] == b"\xfe\xff\x00\xe0"


@pytest.mark.parametrize("transfer_syntax", [DeflatedExplicitVRLittleEndian, ExplicitVRBigEndian])
def test_no_offset_is_recorded_where_frames_need_the_header_walk(client, token, world, transfer_syntax):
    ds, _values = multiframe_ct()
    store_dataset(client, token, ds, transfer_syntax)
    instance = _stored_instance(world, ds)
    assert (instance.pixel_data_offset, instance.pixel_data_length) == (None, None)


def test_a_native_frame_is_read_from_the_recorded_offset_without_reading_headers(
    client, token, world, settings, monkeypatch
):
    settings.STORAGE_SEGMENT_SIZE = 512
    ds, values = multiframe_ct(frames=8, Rows=64, Columns=64)
    url = store_dataset(client, token, ds)
    offset = _recorded_offset(world, ds)
    ranges = _spy_on_reads(monkeypatch)
    assert _frames(api_get(client, token, f"{url}/frames/5")) == [values[4].astype("<u2").tobytes()]
    frame_size = 64 * 64 * 2
    assert ranges == [(offset + 4 * frame_size, offset + 5 * frame_size)]


def test_a_compressed_frame_is_read_from_the_recorded_offset_without_reading_headers(
    client, token, world, settings, monkeypatch
):
    settings.STORAGE_SEGMENT_SIZE = 512
    codestreams = [b"\xff\xd8" + bytes([index]) * 30 + b"\xff\xd9" for index in range(1, 4)]
    data, ds = encapsulated_ct(codestreams)
    url = store_part10(client, token, data, ds)
    offset = _recorded_offset(world, ds)
    ranges = _spy_on_reads(monkeypatch)
    response = api_get(client, token, f"{url}/frames/2", accept_header='multipart/related; type="image/jpeg"')
    assert _frames(response) == [codestreams[1]]
    # Whole segments are decrypted: none before the one that holds the start of the Pixel Data value.
    assert offset >= 512
    assert min(start for start, _end in ranges) == offset - offset % 512


def test_rows_without_a_recorded_offset_are_served_by_walking_the_headers(client, token, world):
    ds, values = multiframe_ct()
    url = store_dataset(client, token, ds)
    codestreams = [b"\xff\xd8" + bytes([index]) * 30 + b"\xff\xd9" for index in range(1, 3)]
    data, encapsulated = encapsulated_ct(codestreams)
    compressed_url = store_part10(client, token, data, encapsulated)
    with hospital_context(world.first.hospital):
        assert Instance.objects.update(pixel_data_offset=None, pixel_data_length=None) == 2
    assert _frames(api_get(client, token, f"{url}/frames/3,1")) == [values[i].astype("<u2").tobytes() for i in (2, 0)]
    jpeg = 'multipart/related; type="image/jpeg"'
    assert _frames(api_get(client, token, f"{compressed_url}/frames/2", accept_header=jpeg)) == [codestreams[1]]


# --- Rendered -------------------------------------------------------------------------------------


def test_rendered_png_applies_rescale_and_the_requested_linear_window(client, token):
    ds, values = multiframe_ct(frames=1, WindowCenter=300, WindowWidth=1500)
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png", window="40,400,linear"))
    hounsfield = values[0].astype(np.float64) * 1 - 1024  # RescaleSlope 1, RescaleIntercept -1024
    expected = _linear_window(hounsfield, 40, 400)
    assert shown.shape == (16, 16)
    assert shown[0, 0] == 0  # -224 HU, below the window
    assert shown[0, 1] == 0  # -218 HU
    assert shown[15, 15] == 255  # 1306 HU, above it
    assert shown[2, 8] == 112  # stored 800 + 6 * 40 = 1040: 16 HU; ((16 - 39.5) / 399 + 0.5) * 255 = 112.48
    assert shown[2, 13] == 132  # stored 1070: 46 HU; ((46 - 39.5) / 399 + 0.5) * 255 = 131.65
    assert np.array_equal(shown, expected)
    assert len(np.unique(expected)) > 20  # the window really cuts through the values


def test_rendered_uses_the_header_window_by_default(client, token):
    ds, values = multiframe_ct(frames=1, WindowCenter=[300, 40], WindowWidth=[1500, 400])
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png"))
    assert np.array_equal(shown, _linear_window(values[0].astype(np.float64) - 1024, 300, 1500))


def test_rendered_without_a_window_spans_minimum_to_maximum(client, token):
    ds, values = multiframe_ct(frames=1, WindowCenter=None, WindowWidth=None)
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png"))
    low, high = values[0].min(), values[0].max()
    expected = np.rint((values[0].astype(np.float64) - low) / (high - low) * 255).astype(np.uint8)
    assert np.array_equal(shown, expected)
    assert (shown.min(), shown.max()) == (0, 255)


def test_monochrome1_is_inverted(client, token):
    ds, values = multiframe_ct(frames=1, PhotometricInterpretation="MONOCHROME1", WindowCenter=40, WindowWidth=400)
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png"))
    assert np.array_equal(shown, 255 - _linear_window(values[0].astype(np.float64) - 1024, 40, 400))
    assert shown[0, 0] == 255  # air is white in MONOCHROME1


def test_rgb_ultrasound_is_rendered_with_its_colours(client, token):
    ds = make_instance("US")
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png"))
    assert np.array_equal(shown, np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(16, 16, 3))


def test_rgb_stored_colour_by_plane_is_rendered_with_its_colours(client, token):
    ds = make_instance("US", PlanarConfiguration=1)
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png"))
    planes = np.frombuffer(ds.PixelData, dtype=np.uint8).reshape(3, 16, 16)
    assert np.array_equal(shown, planes.transpose(1, 2, 0))


def test_signed_values_are_sign_extended_from_bits_stored(client, token):
    values = np.linspace(-1000, 1000, 256).astype(np.int16).reshape(16, 16)
    ds = make_instance("CT", PixelRepresentation=1, RescaleIntercept=0, PixelData=values.astype("<i2").tobytes())
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png", window="0,2000"))
    assert np.array_equal(shown, _linear_window(values.astype(np.float64), 0, 2000))


def test_enhanced_multiframe_uses_each_frames_functional_groups(client, token):
    def voi(center, width):
        window = Dataset()
        window.WindowCenter, window.WindowWidth = center, width
        groups = Dataset()
        groups.FrameVOILUTSequence = Sequence([window])
        return groups

    transformation = Dataset()
    transformation.RescaleSlope, transformation.RescaleIntercept = 2, -1000
    shared = Dataset()
    shared.PixelValueTransformationSequence = Sequence([transformation])
    ds, values = multiframe_ct(frames=2, RescaleSlope=None, RescaleIntercept=None)
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    ds.PerFrameFunctionalGroupsSequence = Sequence([voi(0, 500), voi(3000, 2000)])
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/frames/2/rendered", accept_header="image/png"))
    assert np.array_equal(shown, _linear_window(values[1].astype(np.float64) * 2 - 1000, 3000, 2000))


def test_rendered_frame_is_the_frame_asked_for(client, token):
    ds, values = multiframe_ct(frames=3)
    url = store_dataset(client, token, ds)
    shown = _png(
        api_get(client, token, f"{url}/frames/2/rendered", accept_header="image/png", window="1500,1000,linear")
    )
    assert np.array_equal(shown, _linear_window(values[1].astype(np.float64) - 1024, 1500, 1000))
    assert api_get(client, token, f"{url}/frames/1,2/rendered").status_code == 400
    assert api_get(client, token, f"{url}/frames/4/rendered").status_code == 400


def test_rendered_media_types_follow_accept(client, token):
    ds, _values = multiframe_ct(frames=1)
    url = store_dataset(client, token, ds)
    jpeg = api_get(client, token, f"{url}/rendered")
    assert jpeg.status_code == 200
    assert jpeg["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(jpeg.content)).format == "JPEG"
    assert api_get(client, token, f"{url}/rendered", accept_header="image/png")["Content-Type"] == "image/png"
    preferred = api_get(client, token, f"{url}/rendered", accept_header="image/jpeg;q=0.5, image/png")
    assert preferred["Content-Type"] == "image/png"
    assert api_get(client, token, f"{url}/rendered", accept_header="image/*")["Content-Type"] == "image/jpeg"
    assert api_get(client, token, f"{url}/rendered", accept_header="text/html").status_code == 406


def test_unacceptable_media_type_is_406_with_a_json_error(client, token):
    ds, _values = multiframe_ct(frames=1)
    url = store_dataset(client, token, ds)
    response = api_get(client, token, f"{url}/rendered", accept_header="text/html")
    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"] == "not_acceptable"


def test_accept_query_parameter_overrides_the_header(client, token):
    ds, _values = multiframe_ct(frames=1)
    url = store_dataset(client, token, ds)
    response = api_get(client, token, f"{url}/rendered", accept_header="text/html", accept="image/png")
    assert response["Content-Type"] == "image/png"


def test_viewport_scales_to_fit_keeping_the_aspect_ratio(client, token):
    ds, _values = multiframe_ct(frames=1, Rows=16, Columns=32)
    url = store_dataset(client, token, ds)
    shown = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png", viewport="16,16"))
    assert shown.shape == (8, 16)
    cropped = _png(api_get(client, token, f"{url}/rendered", accept_header="image/png", viewport="4,4,0,0,4,4"))
    assert cropped.shape == (4, 4)


@pytest.mark.parametrize(
    "params",
    [{"window": "40"}, {"window": "40,0"}, {"window": "a,b"}, {"window": "40,400,cubic"}, {"quality": "0"},
     {"quality": "high"}, {"viewport": "10"}, {"viewport": "0,10"}, {"viewport": "10000,10"}],
)  # fmt: skip
def test_malformed_rendering_parameters_are_400(client, token, params):
    ds, _values = multiframe_ct(frames=1)
    url = store_dataset(client, token, ds)
    response = api_get(client, token, f"{url}/rendered", **params)
    assert response.status_code == 400, params


def test_compressed_pixel_data_is_not_rendered(client, token):
    data, ds = encapsulated_ct([b"\xff\xd8" + bytes(16) + b"\xff\xd9"])
    url = store_part10(client, token, data, ds)
    response = api_get(client, token, f"{url}/rendered")
    assert response.status_code == 406
    assert response.json()["error"] == "not_acceptable"


@pytest.mark.django_db(transaction=True)
def test_dicomweb_client_reads_frames_and_rendered_images(live_server, world, local_storage):
    token = token_for(world.first.hospital)
    client = DICOMwebClient(url=f"{live_server.url}/api/first/dicom-web", headers={"Authorization": f"Bearer {token}"})
    ds, values = multiframe_ct(frames=3)
    client.store_instances([ds_with_meta(ds)])
    uids = (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)
    frames = client.retrieve_instance_frames(*uids, frame_numbers=[3, 1])
    assert frames == [values[2].astype("<u2").tobytes(), values[0].astype("<u2").tobytes()]
    png = client.retrieve_instance_rendered(*uids, media_types=("image/png",))
    assert Image.open(io.BytesIO(png)).size == (16, 16)


def ds_with_meta(ds: Dataset) -> Dataset:
    """`ds` read back from Part 10 bytes, as dicomweb-client needs File Meta Information."""
    return dcmread(io.BytesIO(to_part10_bytes(ds)))


# --- Ownership ------------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["frames/1", "rendered", "frames/1/rendered"])
def test_another_hospitals_token_gets_404(client, token, world, suffix):
    ds, _values = multiframe_ct(frames=1)
    url = store_dataset(client, token, ds)
    other = token_for(world.second.hospital)
    response = api_get(client, other, f"{url}/{suffix}")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.parametrize("suffix", ["frames/1", "rendered", "frames/1/rendered"])
def test_another_hospitals_instance_is_the_same_404_as_an_unknown_one(client, token, world, suffix):
    other = token_for(world.second.hospital)
    ds, _values = multiframe_ct(frames=1, InstitutionName="SECOND PEOPLES HOSPITAL")
    other_url = store_dataset(client, other, ds, hospital="second")
    mine = other_url.replace("/api/second/", "/api/first/")
    unknown = mine.replace(ds.SOPInstanceUID, generate_uid())
    for url in (mine, unknown):
        response = api_get(client, token, f"{url}/{suffix}")
        assert response.status_code == 404
        assert response.json() == {"error": "not_found", "detail": "Not found."}
