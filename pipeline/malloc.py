"""Process-wide allocator settings for decoding large frames (standard library only: cheap to import)."""

from __future__ import annotations


def keep_frame_buffers_mapped() -> None:
    """glibc returns large freed blocks to the OS at once, so every multi-MB decoded frame is page-faulted in anew
    (~330 faults a frame on a 960x720 clip); raising the trim and mmap thresholds keeps them mapped and roughly
    doubles decode throughput. A no-op off glibc. Process-wide: only entry points call it."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-1, 256 << 20)  # M_TRIM_THRESHOLD
        libc.mallopt(-3, 16 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass
