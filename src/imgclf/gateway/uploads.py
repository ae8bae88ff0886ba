"""Reading the images out of a ``POST /v1/predict`` body: multipart files or JSON base64.

- ``multipart/form-data``: one or more file parts named ``files`` (``file``, ``image`` and
  ``images`` are accepted too). Any other field is refused, so a typo is an error, not an empty
  request.
- ``application/json``: ``{"images": ["<base64>", ...]}``; standard or URL-safe alphabet, padding
  optional, whitespace ignored.

Sizes are bounded before this runs (the middleware's body limit), so a body is read whole and
split in memory (``imgclf.gateway.multipart``); formats and dimensions are checked afterwards by
``imgclf.data.image_validation``.
"""

from __future__ import annotations

import base64
import binascii
import re

from pydantic import ValidationError
from starlette.requests import Request

from imgclf.errors import UploadError
from imgclf.gateway.multipart import parse_form_data
from imgclf.gateway.schemas import PredictJsonBody
from imgclf.gateway.service import NamedImage

FILE_FIELDS = ("files", "file", "images", "image")
_WHITESPACE = re.compile(rb"\s+")


def decode_base64(text: str) -> bytes:
    """Standard or URL-safe base64, padding optional; anything else is an error."""
    raw = _WHITESPACE.sub(b"", text.encode("ascii", errors="replace"))
    raw = raw.replace(b"-", b"+").replace(b"_", b"/")
    raw += b"=" * (-len(raw) % 4)
    return base64.b64decode(raw, validate=True)


async def _from_multipart(request: Request, max_images: int) -> list[NamedImage]:
    parts = parse_form_data(await request.body(), request.headers["content-type"], max_parts=max_images + 1)
    images: list[NamedImage] = []
    for part in parts:
        if part.name not in FILE_FIELDS:
            raise UploadError(
                "unknown_field", f"unexpected form field {part.name!r}; send images as file fields 'files'"
            )
        if part.filename is None:
            raise UploadError("not_a_file", f"form field {part.name!r} must be a file upload, not text")
        images.append(NamedImage(part.filename, part.data))
    return images


async def _from_json(request: Request) -> list[NamedImage]:
    try:
        body = PredictJsonBody.model_validate_json(await request.body())
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        raise UploadError(
            "invalid_json", f'{where}: {first.get("msg", "invalid")} (expected {{"images": [base64, ...]}})'
        ) from None
    images = []
    for index, text in enumerate(body.images):
        try:
            images.append(NamedImage(None, decode_base64(text)))
        except (binascii.Error, ValueError):
            raise UploadError("invalid_base64", f"image {index}: not valid base64") from None
    return images


async def read_images(request: Request, max_images: int) -> list[NamedImage]:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        images = await _from_multipart(request, max_images)
    elif content_type == "application/json" or content_type.endswith("+json"):
        images = await _from_json(request)
    else:
        raise UploadError(
            "unsupported_media_type",
            f"send multipart/form-data with file fields 'files', or application/json (got {content_type or 'none'})",
            415,
        )
    if not images:
        raise UploadError("no_images", "the request has no images; send file fields named 'files'")
    if len(images) > max_images:
        raise UploadError("too_many_images", f"{len(images)} images in one request; the limit is {max_images}")
    return images
