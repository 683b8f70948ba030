"""DICOM sources (issue #13): cine loops and stills as scanners export them, generated here with pydicom/OpenCV.

Every transfer syntax and photometric interpretation the issue names decodes to the right pixels; frames are paced
from Frame Time / Frame Time Vector / Cine Rate; the Sequence of Ultrasound Regions gives the ROI hint; folders and
extension-less files are recognised; undecodable input and a missing extra are one-line errors; and no identifying
tag reaches any output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import NEUTRAL_CWD, assert_one_line_error, sonolens_proc

pydicom = pytest.importorskip("pydicom", minversion="3.0")
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.pixels import convert_color_space  # noqa: E402
from pydicom.uid import (  # noqa: E402
    UID,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
    generate_uid,
)

from sonolens.pipeline.errors import SourceError  # noqa: E402
from sonolens.pipeline.sources import FolderSource, VideoSource, open_source  # noqa: E402
from sonolens.pipeline.sources.dicom import DicomSource, DicomUnavailable, read_dicom_still  # noqa: E402
from sonolens.pipeline.sources.stills import read_still  # noqa: E402

US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"
US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
H264_HIGH = "1.2.840.10008.1.2.4.102"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
JPIP_REFERENCED = "1.2.840.10008.1.2.4.94"  # pixel data lives on a JPIP server: nothing can decode it from the file
MARKERS = {"PatientName": "ZZNAMEZZ", "PatientID": "ZZPIDZZ", "PatientBirthDate": "ZZDOBZZ",
           "AccessionNumber": "ZZACCZZ", "InstitutionName": "ZZINSTZZ"}


# ---------------------------------------------------------------------------------------------- helpers
def colour_frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    """RGB frames, constant over each pair of columns (so 4:2:2 subsampling loses nothing), frame i recognisable
    by its red level, with a white block top-left (so orientation and offsets show)."""
    frames = []
    for i in range(n):
        a = np.zeros((h, w, 3), np.uint8)
        a[..., 0] = 40 + 10 * i
        a[..., 1] = 200 - 5 * i
        a[..., 2] = 100
        a[4:12, 4:20] = 255
        frames.append(a)
    return frames


def grey_frames(n: int, h: int = 48, w: int = 64) -> list[np.ndarray]:
    frames = []
    for i in range(n):
        a = np.full((h, w), 30 + 12 * i, np.uint8)
        a[4:12, 4:20] = 250
        frames.append(a)
    return frames


def jpeg_bytes(frame: np.ndarray, sampling: str = "422") -> bytes:
    """A baseline JPEG (JFIF, YCbCr) of an RGB or grey frame, chroma subsampled 4:2:2 or not (4:4:4)."""
    factor = {"422": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_422, "444": cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444}[sampling]
    image = cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) if frame.ndim == 3 else frame
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 95, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, factor])
    assert ok
    return buf.tobytes()


def jpeg_reference(frame: np.ndarray, sampling: str = "422") -> np.ndarray:
    """What a standard JPEG decoder (OpenCV's libjpeg) makes of ``jpeg_bytes(frame)``, as RGB or grey."""
    data = np.frombuffer(jpeg_bytes(frame, sampling), np.uint8)
    if frame.ndim == 2:
        return cv2.imdecode(data, cv2.IMREAD_GRAYSCALE)
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def make_dicom(path: Path, frames: list[np.ndarray], *, syntax: str = ExplicitVRLittleEndian,
               photometric: str | None = None, jpeg_sampling: str = "422", preamble: bool = True,
               **tags) -> Path:
    """Write ``frames`` (RGB or grey uint8) as an ultrasound DICOM file the way a scanner exports it."""
    frames = [np.asarray(f) for f in frames]
    n, (h, w) = len(frames), frames[0].shape[:2]
    colour = frames[0].ndim == 3
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = US_MULTIFRAME if n > 1 else US_IMAGE
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = UID(syntax)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "US"
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if n > 1:
        ds.NumberOfFrames = n
    ds.SamplesPerPixel = 3 if colour else 1
    if colour:
        ds.PlanarConfiguration = 0
    ds.PhotometricInterpretation = photometric or ("RGB" if colour else "MONOCHROME2")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # marker values are deliberately invalid for their VR
        for key, value in tags.items():
            setattr(ds, key, value)
    stack = np.stack(frames)
    if syntax == JPEGBaseline8Bit:
        ds.PixelData = encapsulate([jpeg_bytes(f, jpeg_sampling) for f in frames])
        ds["PixelData"].VR = "OB"
        ds.PhotometricInterpretation = photometric or (f"YBR_FULL_{jpeg_sampling}".replace("_444", "")
                                                       if colour else "MONOCHROME2")
        ds.LossyImageCompression = "01"
    elif syntax == RLELossless:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = stack.tobytes()
        ds.compress(RLELossless, stack if n > 1 else stack[0], generate_instance_uid=False)
    elif syntax == ExplicitVRLittleEndian:
        if ds.PhotometricInterpretation == "YBR_FULL":
            stack = convert_color_space(stack, "RGB", "YBR_FULL")
        elif ds.PhotometricInterpretation == "YBR_FULL_422":
            ybr = convert_color_space(stack, "RGB", "YBR_FULL")
            # native 4:2:2: per pair of pixels Y1 Y2 Cb Cr (PS3.5 §8.2.1); the pairs share their colour here
            packed = np.empty((n, h, w // 2, 4), np.uint8)
            packed[..., 0], packed[..., 1] = ybr[:, :, 0::2, 0], ybr[:, :, 1::2, 0]
            packed[..., 2], packed[..., 3] = ybr[:, :, 0::2, 1], ybr[:, :, 0::2, 2]
            stack = packed
        ds.PixelData = stack.tobytes()
    else:  # a transfer syntax the test only names: a placeholder item
        ds.PixelData = encapsulate([b"\x00" * 64] * n)
        ds["PixelData"].VR = "OB"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # marker values are deliberately invalid for their VR
        ds.save_as(path, enforce_file_format=preamble)
    return path


def palette_file(path: Path, n: int = 3) -> tuple[Path, list[np.ndarray]]:
    """A PALETTE COLOR cine: 8-bit indices through 16-bit red/green/blue tables; returns the expected RGB frames."""
    idx = np.arange(256, dtype=np.uint16)
    red, green, blue = (idx * 257), ((255 - idx) * 257), ((idx // 2) * 257)
    frames = []
    for i in range(n):
        a = np.full((48, 64), 20 * i + 5, np.uint8)
        a[4:12, 4:20] = 200
        frames.append(a)
    make_dicom(path, frames, photometric="PALETTE COLOR",
               RedPaletteColorLookupTableDescriptor=[256, 0, 16],
               GreenPaletteColorLookupTableDescriptor=[256, 0, 16],
               BluePaletteColorLookupTableDescriptor=[256, 0, 16],
               RedPaletteColorLookupTableData=red.astype("<u2").tobytes(),
               GreenPaletteColorLookupTableData=green.astype("<u2").tobytes(),
               BluePaletteColorLookupTableData=blue.astype("<u2").tobytes(),
               FrameTime=50)
    expected = [np.stack([(red >> 8)[f], (green >> 8)[f], (blue >> 8)[f]], axis=-1).astype(np.uint8)
                for f in frames]
    return path, expected


def read_all(path: Path) -> tuple[DicomSource, list]:
    src = open_source(str(path))
    assert isinstance(src, DicomSource)
    src.open()
    frames = list(src.frames())
    return src, frames


def assert_close(got: np.ndarray, want: np.ndarray, tol: int) -> None:
    assert got.shape == want.shape and got.dtype == np.uint8
    diff = np.abs(got.astype(int) - want.astype(int))
    assert diff.max() <= tol, diff.max()


# ---------------------------------------------------------------------------------------------- decoding
CASES = [
    # (id, syntax, photometric, colour, tolerance: lossless 0; YBR rounding 2; JPEG: against a JPEG decoder's output)
    ("native-mono2", ExplicitVRLittleEndian, None, False, 0),
    ("native-rgb", ExplicitVRLittleEndian, None, True, 0),
    ("native-ybr-full", ExplicitVRLittleEndian, "YBR_FULL", True, 2),
    ("native-ybr-full-422", ExplicitVRLittleEndian, "YBR_FULL_422", True, 2),
    ("jpeg-baseline-ybr-full-422", JPEGBaseline8Bit, None, True, 3),
    ("jpeg-baseline-ybr-full", JPEGBaseline8Bit, "YBR_FULL", True, 3),
    ("jpeg-baseline-mono2", JPEGBaseline8Bit, None, False, 3),
    ("rle-mono2", RLELossless, None, False, 0),
    ("rle-rgb", RLELossless, None, True, 0),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_every_syntax_and_photometric_decodes_every_frame(tmp_path, case):
    name, syntax, photometric, colour, tol = case
    frames = colour_frames(5) if colour else grey_frames(5)
    sampling = "444" if photometric == "YBR_FULL" and syntax == JPEGBaseline8Bit else "422"
    path = make_dicom(tmp_path / f"{name}.dcm", frames, syntax=syntax, photometric=photometric,
                      jpeg_sampling=sampling, FrameTime=40)
    src, got = read_all(path)
    assert (src.info.kind, src.info.frame_count, src.info.width, src.info.height) == ("video", 5, 64, 48)
    assert len(got) == 5
    for raw, want in zip(got, frames):
        if syntax == JPEGBaseline8Bit:  # lossy: the pixels a JPEG decoder gives, and close to the original
            assert_close(raw.pixels, jpeg_reference(want, sampling), tol)
            assert np.abs(raw.pixels.astype(int) - want.astype(int)).mean() < 1.5
        else:
            assert_close(raw.pixels, want, tol)
    assert [raw.pts_s for raw in got] == pytest.approx([0.0, 0.04, 0.08, 0.12, 0.16])


def test_palette_colour_goes_through_its_lookup_tables(tmp_path):
    path, expected = palette_file(tmp_path / "palette.dcm")
    src, got = read_all(path)
    assert len(got) == 3 and src.info.fps == pytest.approx(20.0)
    for raw, want in zip(got, expected):
        assert_close(raw.pixels, want, 0)


def test_monochrome1_is_inverted(tmp_path):
    frames = grey_frames(2)
    src, got = read_all(make_dicom(tmp_path / "m1.dcm", frames, photometric="MONOCHROME1"))
    assert_close(got[0].pixels, 255 - frames[0], 0)


def test_16_bit_greyscale_uses_its_window(tmp_path):
    a = np.zeros((32, 40), np.uint16)
    a[:, 20:] = 1000
    a[:, 30:] = 3000
    path = make_dicom(tmp_path / "deep.dcm", [a.astype(np.uint8)])  # geometry first, then 16-bit pixels
    ds = pydicom.dcmread(path)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.WindowCenter, ds.WindowWidth = 1000, 1000
    ds.PixelData = a.tobytes()
    ds.save_as(path)
    pixels = read_dicom_still(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (32, 40)
    assert pixels[0, 0] == 0 and pixels[0, 25] == 128 and pixels[0, 35] == 255  # below, centre, above the window


def test_h264_transfer_syntax_decodes_through_pyav(tmp_path):
    av = pytest.importorskip("av")
    import io

    buf = io.BytesIO()
    with av.open(buf, "w", format="h264") as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(12):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 10 * i, np.uint8), "rgb24")))
        out.mux(stream.encode(None))
    path = make_dicom(tmp_path / "h264.dcm", colour_frames(12), syntax=H264_HIGH, photometric="YBR_PARTIAL_420",
                      FrameTime=1000 / 30)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([buf.getvalue()])
    ds.save_as(path)
    src, got = read_all(path)
    assert len(got) == 12 and src.info.fps == pytest.approx(30.0)
    assert [int(r.pixels[20, 30].mean()) for r in got] == pytest.approx([10 * i for i in range(12)], abs=3)
    assert got[-1].pts_s == pytest.approx(11 / 30)


def htj2k_file(path: Path, frames: int = 3) -> tuple[Path, np.ndarray]:
    """An HTJ2K (lossless, .201) cine of the committed codestream ``data/htj2k_48x64.j2c`` repeated ``frames``
    times (made by ``data/make_htj2k.py``, so no HTJ2K encoder is needed here); returns the expected grey frame."""
    from data.make_htj2k import CODESTREAM, htj2k_frame

    make_dicom(path, grey_frames(frames), syntax=HTJ2K_LOSSLESS, FrameTime=40)
    ds = pydicom.dcmread(path)
    ds.PixelData = encapsulate([CODESTREAM.read_bytes()] * frames)
    ds.save_as(path)
    return path, htj2k_frame()


def test_htj2k_decodes_when_its_plugin_is_installed(tmp_path):
    pytest.importorskip("openjpeg", reason="pylibjpeg-openjpeg (the 'dicom' extra) decodes HTJ2K")
    from sonolens.pipeline.preprocess import to_gray

    path, expected = htj2k_file(tmp_path / "htj2k.dcm")
    src, got = read_all(path)
    assert len(got) == 3
    for raw in got:
        np.testing.assert_array_equal(to_gray(raw.pixels), expected)


def test_a_missing_htj2k_decoder_names_the_package(tmp_path, monkeypatch):
    """The 'dicom' extra installed but no HTJ2K decoder: the line names pylibjpeg-openjpeg, not just the extra."""
    from pydicom.pixels import get_decoder

    path, _ = htj2k_file(tmp_path / "htj2k.dcm")
    decoder = get_decoder(UID(HTJ2K_LOSSLESS))
    monkeypatch.setattr(type(decoder), "is_available", property(lambda self: False))
    with pytest.raises(DicomUnavailable) as err:
        DicomSource(path).open()
    message = str(err.value)
    assert "\n" not in message and "htj2k.dcm" in message and "High-Throughput JPEG 2000" in message
    assert "pip install pylibjpeg-openjpeg" in message


@pytest.mark.parametrize("syntax", ["native", "jpeg-with-offsets", "jpeg-without-offsets"])
def test_a_header_that_undercounts_its_frames_is_a_warning_in_the_report(tmp_path, syntax):
    """NumberOfFrames 6 over pixel data of 10 frames: the 6 declared play (as other viewers do), with one warning
    line and the same words in the JSON report's source notes."""
    path = make_dicom(tmp_path / "short.dcm", colour_frames(10),
                      syntax=ExplicitVRLittleEndian if syntax == "native" else JPEGBaseline8Bit, FrameTime=40)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 6
    if syntax == "jpeg-without-offsets":
        ds.PixelData = encapsulate([jpeg_bytes(f) for f in colour_frames(10)], has_bot=False)
    ds.save_as(path)
    report = tmp_path / "r.json"
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate", "--json", str(report))
    assert proc.returncode == 0, proc.stderr
    warning = [ln for ln in proc.stderr.splitlines() if "NumberOfFrames" in ln]
    assert len(warning) == 1 and "says 6" in warning[0] and "holds 10 frames" in warning[0], proc.stderr
    result = json.loads(report.read_text())
    assert result["frames_in"] == 6
    assert result["source"]["notes"] == [warning[0].split("warning: ", 1)[1]]
    ds.NumberOfFrames = 10
    ds.save_as(path)
    source = DicomSource(path)
    source.open()
    assert source.notes == ()


# ---------------------------------------------------------------------------------------------- the cine
def test_ybr_full_422_jpeg_cine_runs_16_frames_at_25_fps(tmp_path):
    """The issue's file: FFmpeg probed it as raw MJPEG, lost 4 frames and guessed the rate ("12 in")."""
    frames = colour_frames(16)
    path = make_dicom(tmp_path / "cine.dcm", frames, syntax=JPEGBaseline8Bit, FrameTime=40)
    report, csv_path = tmp_path / "r.json", tmp_path / "c.csv"
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate", "--json", str(report), "--csv",
                         str(csv_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(report.read_text())
    assert r["frames_in"] == 16 and r["frames_processed"] == 16
    assert r["source"]["fps"] == pytest.approx(25.0) and r["source"]["frame_count"] == 16
    assert r["source"]["name"] == "cine.dcm"
    rows = csv_path.read_text().splitlines()
    header = rows[0].split(",")
    pts = [float(line.split(",")[header.index("pts_s")]) for line in rows[1:]]
    assert pts == pytest.approx([0.04 * i for i in range(16)])


# ---------------------------------------------------------------------------------------------- timing
def test_frame_time_vector_paces_each_frame(tmp_path):
    path = make_dicom(tmp_path / "ftv.dcm", grey_frames(4), FrameTimeVector=[0, 20, 40, 60],
                      FrameTime=99, FrameIncrementPointer=0x00181065)
    src, got = read_all(path)
    assert [r.pts_s for r in got] == pytest.approx([0.0, 0.02, 0.06, 0.12])  # the pointer says: the vector
    assert src.info.fps == pytest.approx(3 / 0.12)


def test_frame_time_wins_when_the_pointer_names_it(tmp_path):
    path = make_dicom(tmp_path / "ft.dcm", grey_frames(3), FrameTimeVector=[0, 20, 40], FrameTime=50,
                      FrameIncrementPointer=0x00181063)
    _, got = read_all(path)
    assert [r.pts_s for r in got] == pytest.approx([0.0, 0.05, 0.10])


def test_cine_rate_when_no_frame_time(tmp_path):
    src, got = read_all(make_dicom(tmp_path / "cine_rate.dcm", grey_frames(3), CineRate=10))
    assert [r.pts_s for r in got] == pytest.approx([0.0, 0.1, 0.2]) and src.info.fps == pytest.approx(10.0)


def test_no_timing_leaves_pts_unknown(tmp_path):
    src, got = read_all(make_dicom(tmp_path / "untimed.dcm", grey_frames(3)))
    assert src.info.fps is None and [r.pts_s for r in got] == [None, None, None]


def test_start_offset_lands_on_the_frame_on_screen(tmp_path):
    path = make_dicom(tmp_path / "seek.dcm", grey_frames(10), FrameTime=100)
    src = DicomSource(path)
    src.open()
    got = list(src.frames(start_s=0.35))
    assert len(got) == 7 and got[0].pts_s == pytest.approx(0.3)
    assert_close(got[0].pixels, grey_frames(10)[3], 0)
    assert list(src.frames(start_s=5.0)) == []
    assert len(list(src.frames())) == 10  # and it restarts


# ---------------------------------------------------------------------------------------------- ROI hint
def region(x0, y0, x1, y1, spatial=1, data_type=1) -> Dataset:
    item = Dataset()
    item.RegionSpatialFormat, item.RegionDataType, item.RegionFlags = spatial, data_type, 0
    item.RegionLocationMinX0, item.RegionLocationMinY0 = x0, y0
    item.RegionLocationMaxX1, item.RegionLocationMaxY1 = x1, y1
    return item


def test_roi_hint_is_the_2d_tissue_region(tmp_path):
    regions = [region(0, 30, 63, 47, spatial=3, data_type=3),  # spectral Doppler strip: not an image region
               region(10, 2, 49, 27, spatial=1, data_type=2),  # colour flow box
               region(8, 1, 55, 28, spatial=1, data_type=1)]  # the B-mode image
    path = make_dicom(tmp_path / "regions.dcm", grey_frames(2), SequenceOfUltrasoundRegions=regions)
    src = DicomSource(path)
    info = src.open()
    assert info.roi_hint == src.roi_hint == (8, 1, 48, 28)
    report = tmp_path / "r.json"  # and the run uses it rather than guessing
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate", "--json", str(report), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(report.read_text())["roi"] == [8, 1, 48, 28]


def test_roi_hint_is_clamped_and_none_without_regions(tmp_path):
    path = make_dicom(tmp_path / "big_region.dcm", grey_frames(2), SequenceOfUltrasoundRegions=[region(5, 5, 500, 40)])
    assert DicomSource(path).open().roi_hint == (5, 5, 59, 36)
    assert DicomSource(make_dicom(tmp_path / "none.dcm", grey_frames(2))).open().roi_hint is None


# ---------------------------------------------------------------------------------------------- files and folders
def test_single_frame_still(tmp_path):
    frame = colour_frames(1)[0]
    src, got = read_all(make_dicom(tmp_path / "still.dcm", [frame]))
    assert (src.info.kind, src.info.frame_count, src.info.fps) == ("image", 1, None)
    assert len(got) == 1 and got[0].pts_s == 0.0
    assert_close(got[0].pixels, frame, 0)


def test_file_without_extension_is_detected_by_its_preamble(tmp_path):
    path = make_dicom(tmp_path / "IM_0001", grey_frames(3), FrameTime=40)
    src = open_source(str(path))
    assert isinstance(src, DicomSource) and src.open().frame_count == 3
    other = tmp_path / "IM_0002"
    other.write_bytes(b"\x00" * 200)  # no DICM marker: not DICOM
    assert isinstance(open_source(str(other)), VideoSource)


def test_folder_of_dicom_stills_plays_as_a_slideshow(tmp_path):
    folder = tmp_path / "study"
    folder.mkdir()
    stills = grey_frames(3)
    make_dicom(folder / "img2.dcm", [stills[1]])
    make_dicom(folder / "img10.dcm", [stills[2]])
    make_dicom(folder / "IMG1", [stills[0]])  # no extension
    (folder / "notes").write_text("not an image")
    src = open_source(str(folder), fps=2.0)
    assert isinstance(src, FolderSource)
    src.open()
    got = list(src.frames())
    assert [p.name for p in src.paths] == ["IMG1", "img2.dcm", "img10.dcm"]
    for raw, want in zip(got, stills):
        assert_close(raw.pixels, want, 0)
    assert [r.pts_s for r in got] == [0.0, 0.5, 1.0]


def test_a_corrupt_dicom_in_a_folder_is_skipped_like_any_unreadable_image(tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    make_dicom(folder / "a.dcm", grey_frames(1))
    (folder / "b.dcm").write_bytes(b"garbage" * 10)
    src = FolderSource(folder)
    src.open()
    assert len(list(src.frames())) == 1 and src.skipped == 1


def test_training_loader_reads_dicom_through_the_runtime_reader(tmp_path):
    from sonolens.pipeline.preprocess import to_gray
    from sonolens.training.data import is_image_file, load_gray

    path = make_dicom(tmp_path / "still.dcm", [colour_frames(1)[0]])
    assert is_image_file(path)
    gray = load_gray(path)
    assert gray.shape == (48, 64)
    np.testing.assert_array_equal(gray, to_gray(read_still(path)))


# ---------------------------------------------------------------------------------------------- errors
def test_undecodable_transfer_syntax_is_one_line_naming_it(tmp_path):
    path = make_dicom(tmp_path / "jpip.dcm", grey_frames(2), syntax=JPIP_REFERENCED)
    with pytest.raises(SourceError) as err:
        DicomSource(path).open()
    assert "\n" not in str(err.value) and "JPIP" in str(err.value) and "jpip.dcm" in str(err.value)
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate")
    assert_one_line_error(proc, "jpip.dcm", "JPIP Referenced")


def test_truncated_cine_delivers_its_frames_then_one_line(tmp_path):
    path = make_dicom(tmp_path / "cut.dcm", colour_frames(10), syntax=JPEGBaseline8Bit, FrameTime=40)
    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = 16  # the header promises more frames than the file holds
    ds.save_as(path)
    report = tmp_path / "r.json"
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate", "--json", str(report))
    assert_one_line_error(proc, "cut.dcm")
    assert json.loads(report.read_text())["frames_in"] == 10


def test_not_dicom_inside(tmp_path):
    path = tmp_path / "fake.dcm"
    path.write_bytes(b"\x00" * 128 + b"DICM" + b"\xff" * 50)
    with pytest.raises(SourceError) as err:
        open_source(str(path)).open()
    assert "\n" not in str(err.value) and "fake.dcm" in str(err.value)


def test_missing_extra_names_it(tmp_path, monkeypatch):
    path = make_dicom(tmp_path / "cine.dcm", grey_frames(2))
    monkeypatch.setitem(sys.modules, "pydicom", None)
    with pytest.raises(DicomUnavailable) as err:
        DicomSource(path).open()
    assert "sonolens[dicom]" in str(err.value) and "\n" not in str(err.value)
    code = ("import sys; sys.modules['pydicom'] = None; from sonolens.cli import main; "
            f"sys.exit(main(['run', {str(path)!r}, '--model', 'off']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=NEUTRAL_CWD)
    assert_one_line_error(proc, "cine.dcm", "sonolens[dicom]")


# ---------------------------------------------------------------------------------------------- privacy
def test_no_identifying_tag_reaches_any_output(tmp_path):
    path = make_dicom(tmp_path / "cine.dcm", colour_frames(6), syntax=JPEGBaseline8Bit, FrameTime=40,
                      SeriesDescription="ZZDESCZZ", **MARKERS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom itself would print the invalid birth date: sonolens must not
        assert pydicom.dcmread(path).PatientName == "ZZNAMEZZ"  # the markers really are in the file
    outputs = {"json": tmp_path / "r.json", "csv": tmp_path / "c.csv", "record": tmp_path / "o.mp4"}
    proc = sonolens_proc("run", str(path), "--model", "off", "--json", str(outputs["json"]), "--csv",
                         str(outputs["csv"]), "--record", str(outputs["record"]))
    assert proc.returncode == 0, proc.stderr
    texts = [proc.stdout, proc.stderr] + [p.read_bytes().decode("latin-1") for p in outputs.values()]
    for marker in [*MARKERS.values(), "ZZDESCZZ"]:
        for text in texts:
            assert marker not in text
    assert json.loads(outputs["json"].read_text())["source"]["name"] == "cine.dcm"
    # a failing run says no more than a succeeding one
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = pydicom.dcmread(path)
        ds.NumberOfFrames = 9
        ds.save_as(path)
    proc = sonolens_proc("run", str(path), "--model", "off", "--max-rate")
    assert_one_line_error(proc, "cine.dcm")
    for marker in MARKERS.values():
        assert marker not in proc.stderr and marker not in proc.stdout


def test_audit_data_reads_a_folder_of_dicom_stills(tmp_path):
    """``sonolens audit-data`` goes through the same reader: the same scan saved under two labels is a conflict."""
    pytest.importorskip("imagehash")
    still = colour_frames(1)[0]
    other = np.ascontiguousarray(np.rot90(grey_frames(1)[0]))
    for label, frame in (("benign", still), ("malignant", still), ("normal", other)):
        (tmp_path / "data" / label).mkdir(parents=True)
        make_dicom(tmp_path / "data" / label / f"{label}.dcm", [frame])
    csv_path = tmp_path / "audit.csv"
    proc = sonolens_proc("audit-data", str(tmp_path / "data"), "--csv", str(csv_path))
    assert proc.returncode == 0, proc.stderr
    import csv
    import re

    rows = {Path(r["file"]).name: r for r in csv.DictReader(csv_path.open())}
    assert set(rows) == {"benign.dcm", "malignant.dcm", "normal.dcm"}
    assert re.search(r"unreadable\s+0\b", proc.stdout)
    assert rows["benign.dcm"]["group"] == rows["malignant.dcm"]["group"] != rows["normal.dcm"]["group"]
    assert rows["benign.dcm"]["conflict"] == rows["malignant.dcm"]["conflict"] != rows["normal.dcm"]["conflict"]
