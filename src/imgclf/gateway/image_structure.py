"""Structural checks of uploads (the container's end, no pixel decoded): see ``imgclf.data.image_structure``."""

from __future__ import annotations

from imgclf.data.image_structure import MAX_JPEG_SEGMENTS, MAX_PNG_CHUNKS, check_structure, declared_size

__all__ = ["MAX_JPEG_SEGMENTS", "MAX_PNG_CHUNKS", "check_structure", "declared_size"]
