"""DICOM input: files written here with pydicom, read back through the same path as JPEG/PNG."""

from __future__ import annotations

import io
import struct
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from cnnlab.data.dicom import open_dicom
from cnnlab.data.images import ImageReadError, load_image_tensor, read_image


def write_dicom(
    path: Path,
    pixels: np.ndarray | None,
    photometric: str = "MONOCHROME2",
    bits: int | None = None,
    signed: bool = False,
    preamble: bool = True,
    **elements,
) -> Path:
    """A minimal single-frame DICOM file (explicit VR little endian, uncompressed)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "CR"
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape[:2]
        ds.SamplesPerPixel = 3 if pixels.ndim == 3 else 1
        if pixels.ndim == 3:
            ds.PlanarConfiguration = 0
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated = pixels.dtype.itemsize * 8
        ds.BitsStored = bits or ds.BitsAllocated
        ds.HighBit = ds.BitsStored - 1
        ds.PixelRepresentation = 1 if signed else 0
        ds.PixelData = pixels.tobytes()
    for key, value in elements.items():
        setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=preamble)
    return path


def ramp(dtype, hi: int, shape=(8, 16)) -> np.ndarray:
    return np.linspace(0, hi, shape[0] * shape[1]).round().astype(dtype).reshape(shape)


def test_8bit_monochrome2_reads_as_stored(tmp_path: Path) -> None:
    px = ramp(np.uint8, 255)
    arr = read_image(write_dicom(tmp_path / "a.dcm", px))
    assert arr.shape == (8, 16, 1) and arr.dtype == np.uint8
    assert arr[0, 0, 0] == 0 and arr[-1, -1, 0] == 255  # the full range, min-max scaled
    np.testing.assert_allclose(arr[..., 0].astype(int), px.astype(int), atol=1)


def test_16bit_12_stored_bits_use_the_full_gray_range(tmp_path: Path) -> None:
    px = ramp(np.uint16, 4095)
    arr = read_image(write_dicom(tmp_path / "b.dcm", px, bits=12))[..., 0]
    assert arr.min() == 0 and arr.max() == 255
    assert np.all(np.diff(arr.reshape(-1).astype(int)) >= 0)  # order kept


def test_monochrome1_is_inverted(tmp_path: Path) -> None:
    px = ramp(np.uint16, 1000)
    m2 = read_image(write_dicom(tmp_path / "m2.dcm", px))[..., 0].astype(int)
    m1 = read_image(write_dicom(tmp_path / "m1.dcm", px, photometric="MONOCHROME1"))[..., 0]
    np.testing.assert_array_equal(m1.astype(int), 255 - m2)
    assert m1[0, 0] == 255  # the lowest stored value is white in MONOCHROME1


def test_window_centre_width_after_rescale(tmp_path: Path) -> None:
    # stored 0..4000, slope 1 intercept -1000 -> -1000..3000 (CT-like); window 40 +- 200
    px = np.array([[0, 840, 1040, 1240, 4000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "w.dcm", px, bits=12, RescaleSlope=1, RescaleIntercept=-1000,
                       WindowCenter=40, WindowWidth=400)  # fmt: skip
    arr = read_image(path)[0, :, 0].astype(int)
    # values -1000, -160 (below the window), 40 (centre), 240 (top edge), 3000 (above)
    assert arr[0] == 0 and arr[1] == 0
    assert abs(arr[2] - 128) <= 1
    assert arr[3] == 255 and arr[4] == 255


def test_rescale_slope_alone_maps_the_range(tmp_path: Path) -> None:
    px = np.array([[0, 100, 200]], dtype=np.uint16)
    path = write_dicom(tmp_path / "s.dcm", px, RescaleSlope=2, RescaleIntercept=50)
    arr = read_image(path)[0, :, 0].astype(int)
    assert arr.tolist() == [0, 128, 255]


def test_multiple_windows_take_the_first(tmp_path: Path) -> None:
    px = np.array([[0, 100, 200, 300]], dtype=np.uint16)
    path = write_dicom(tmp_path / "mw.dcm", px, WindowCenter=[100, 2000], WindowWidth=[101, 10])
    arr = read_image(path)[0, :, 0].astype(int)
    assert arr[0] == 0 and abs(arr[1] - 128) <= 1 and arr[2] == 255


def test_voi_lut_sequence_is_applied(tmp_path: Path) -> None:
    px = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    item = Dataset()
    item.LUTDescriptor = [4, 0, 8]  # 4 entries, first value mapped 0, 8-bit output
    # deliberately not monotonic: a lookup table, not a window (LUTData is OW: raw 16-bit words)
    item.add_new(0x00283006, "US", [255, 0, 128, 64])
    path = write_dicom(tmp_path / "lut.dcm", px, VOILUTSequence=[item])
    arr = read_image(path)[0, :, 0].astype(int)
    assert arr.tolist() == [255, 0, 128, 64]


def test_rgb_dicom_keeps_colour(tmp_path: Path) -> None:
    px = np.zeros((4, 4, 3), dtype=np.uint8)
    px[..., 0] = 200
    arr = read_image(write_dicom(tmp_path / "rgb.dcm", px, photometric="RGB"), "auto")
    assert arr.shape == (4, 4, 3) and arr[0, 0].tolist() == [200, 0, 0]


def test_no_pixel_data_is_a_clear_error(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "empty.dcm", None)
    with pytest.raises(ImageReadError, match="no pixel data"):
        read_image(path)


def test_dicom_without_preamble_is_found_by_suffix(tmp_path: Path) -> None:
    px = ramp(np.uint8, 255)
    arr = read_image(write_dicom(tmp_path / "raw.dcm", px, preamble=False))
    assert arr.shape == (8, 16, 1) and arr.max() == 255


def test_dicom_goes_through_the_model_input_path(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "x.dcm", ramp(np.uint16, 4095, (64, 48)), bits=12)
    t = load_image_tensor(path, 3, [32, 32])
    assert tuple(t.shape) == (3, 32, 32) and t.dtype.is_floating_point is False
    assert bool((t[0] == t[1]).all())  # gray repeated into RGB


def test_a_loose_file_pydicom_recovers_is_read_without_its_warning():
    """File meta says implicit VR, the elements are explicit: pydicom reads it and warns how it
    recovered; cnnlab's readers (header and pixels) pass on the dataset and keep quiet."""

    def element(group: int, elem: int, vr: bytes, value: bytes) -> bytes:
        return struct.pack("<HH", group, elem) + vr + struct.pack("<H", len(value)) + value

    meta = element(2, 0x10, b"UI", b"1.2.840.10008.1.2\x00")  # implicit VR little endian
    meta = element(2, 0, b"UL", struct.pack("<I", len(meta))) + meta
    data = (b"\x00" * 128 + b"DICM" + meta + element(0x10, 0x10, b"PN", b"Doe ")
            + element(0x28, 0x10, b"US", struct.pack("<H", 4)))  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pydicom.dcmread(io.BytesIO(data), force=True)
        assert any("explicit VR" in str(w.message) for w in caught)  # pydicom does warn
        caught.clear()
        assert open_dicom(data).Rows == 4
        assert open_dicom(data, header_only=True).PatientName == "Doe"
        with pytest.raises(ImageReadError, match="no pixel data"):
            read_image(data, "loose.dcm")
    assert not caught
