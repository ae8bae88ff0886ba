"""Upload validation, as the gateway uses it: the checks live in ``imgclf.data.image_validation``.

They moved there so that batch inference (``imgclf.batch``), a layer that may not import the
gateway, refuses the same files for the same reasons; the gateway's names stay importable here.
"""

from __future__ import annotations

from imgclf.data.image_validation import ImageUpload, UploadLimits, validate_image

__all__ = ["ImageUpload", "UploadLimits", "validate_image"]
