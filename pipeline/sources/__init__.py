"""Frame sources behind one interface, and ``open_source()`` that picks one from a command-line string.

Spec strings:
  ``camera:N`` / ``/dev/videoN`` / ``rtsp://…`` / ``http(s)://…`` / ``udp://…``  → :class:`CameraSource`
                                               (devices through OpenCV, network streams through PyAV)
  ``igtl://host:port[/device]``                                           → ``IgtlSource`` (OpenIGTLink IMAGE)
  ``phantom:KIND``                                                        → ``PhantomSource`` (synthetic)
  an existing folder                                                      → :class:`FolderSource`
  a ``.dcm``/``.dicom`` file, or any file with the ``DICM`` preamble        → :class:`DicomSource`
  a ``.png/.jpg/.jpeg/.bmp/.tif/.tiff`` file                              → :class:`ImageSource`
  any other file                                                          → :class:`VideoSource`
"""

from __future__ import annotations

from pathlib import Path

from ..errors import SourceError
from ..messages import RawFrame
from .base import Source, SourceInfo
from .camera import CameraSource, stream_capture
from .dicom import DicomSource, is_dicom_path
from .options import check_options
from .stills import IMAGE_EXTENSIONS, FolderSource, ImageSource
from .video import OpenCVVideoSource, VideoSource

__all__ = [
    "CameraSource",
    "DicomSource",
    "FolderSource",
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "OpenCVVideoSource",
    "RawFrame",
    "Source",
    "SourceInfo",
    "VideoSource",
    "open_source",
]

_STREAM_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")


def open_source(spec: str, *, fps: float | None = None, options: dict | None = None, hold: bool = False) -> Source:
    """The source ``spec`` names, *not yet opened* (call ``.open()`` or use it in a ``with``); ``options``: what its
    kind accepts beside the spec (``source.options``: a stream's transport and credentials, an OpenIGTLink device).

    ``fps`` is the slideshow rate of a folder (default 1 image/s) and nothing else: callers pass their
    slideshow setting for every spec, so it must not slow a camera or a phantom down to 1 frame/s. A video
    plays at its own rate (pacing is the capture thread's job); a camera or phantom runs at its own rate.
    ``hold``: a folder whose images each wait for ``FolderSource.advance()`` (anything else: a one-line error).
    """
    spec = str(spec).strip()
    if not spec:
        raise SourceError("no source given")
    if hold and not Path(spec).expanduser().is_dir():
        raise SourceError(f"holding each image until advanced applies to a folder of images, not {spec}")
    opts = check_options(spec, options, _STREAM_PREFIXES)
    lower = spec.lower()
    if lower.startswith("camera:"):
        device = spec.split(":", 1)[1].strip()
        if not device:
            raise SourceError("camera: needs a device, e.g. camera:0 or camera:/dev/video0")
        return CameraSource(int(device) if device.isdigit() else device)
    if lower.startswith(_STREAM_PREFIXES) and opts:
        return CameraSource(spec, capture_factory=lambda s: stream_capture(str(s), opts))
    if lower.startswith("/dev/video") or lower.startswith(_STREAM_PREFIXES):
        return CameraSource(spec)
    if lower.startswith("igtl://"):
        from .igtl import IgtlSource, parse_igtl_url

        if "device" in opts:
            host, port, _ = parse_igtl_url(spec)
            return IgtlSource(host, port, opts["device"])
        return IgtlSource.from_url(spec)
    if lower.startswith("phantom:"):
        kind = spec.split(":", 1)[1].strip()
        try:
            from .phantom import PhantomSource
        except ImportError:
            raise SourceError("phantom sources are not available") from None
        return PhantomSource(kind)

    path = Path(spec).expanduser()
    if path.is_dir():
        return FolderSource(path, fps=fps or 1.0, hold=hold)
    if not path.exists():
        hint = f" (for a camera, use camera:{spec})" if spec.isdigit() else ""
        raise SourceError(f"no such file: {spec}{hint}")
    if path.is_file() and is_dicom_path(path):
        return DicomSource(path)
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return ImageSource(path)
    return VideoSource(path)
