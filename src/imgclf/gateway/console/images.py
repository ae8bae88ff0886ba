"""Images from the image store, by content hash, to signed-in people only.

Reviewers (``review`` or ``admin``) see any logged image; a ``predict``-only key sees the images
of its own predictions. The ``Content-Type`` comes from the format validation found when the
image was uploaded (never from the bytes or a file name), with ``X-Content-Type-Options: nosniff``
and a sandboxing CSP, so a browser never runs an upload as anything but an image. ``?size=thumb``
answers a JPEG at most 192 px a side (made with Pillow from the validated original; cached).
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse
from starlette.responses import Response

from imgclf.gateway.console.base import ConsoleRoute, ConsoleUser, console_of, gateway_of, signed_in
from imgclf.gateway.errors import ApiError
from imgclf.storage.predictions import image_format

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)

MEDIA_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "GIF": "image/gif", "BMP": "image/bmp", "WEBP": "image/webp"}
THUMB_SIDE = 192
IMAGE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; sandbox",
    "Cache-Control": "private, max-age=86400, immutable",  # content-addressed: the bytes never change
    "Content-Disposition": "inline",
}


class Thumbnails:
    """Small JPEGs of stored images, the most recently used kept in memory."""

    def __init__(self, capacity: int = 512) -> None:
        self.capacity = capacity
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, digest: str, path: str) -> bytes:
        with self._lock:
            if digest in self._items:
                self._items.move_to_end(digest)
                return self._items[digest]
        data = _thumbnail(path)
        with self._lock:
            self._items[digest] = data
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return data


def _thumbnail(path: str) -> bytes:
    from PIL import Image

    with Image.open(path) as image:
        image.draft("RGB", (THUMB_SIDE, THUMB_SIDE))  # JPEG: decode at a reduced scale
        image.seek(0)
        image = image.convert("RGB")
        image.thumbnail((THUMB_SIDE, THUMB_SIDE))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=82)
    return buffer.getvalue()


@router.get("/images/{digest}")
async def image(
    request: Request,
    digest: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
    user: Annotated[ConsoleUser, Depends(signed_in)],
    size: str | None = None,
) -> Response:
    gateway = gateway_of(request)
    gateway.require_database()
    fmt = await gateway.run_blocking(image_format, gateway.engine, digest, user.owner)
    store = gateway.service.store
    if fmt is None or fmt not in MEDIA_TYPES or not store.contains(digest):
        raise ApiError(404, "not_found", "no such image (or it was pruned from the image store)")
    path = store.path(digest)
    if size == "thumb":
        thumbnails = console_of(request).caches.setdefault("thumbnails", Thumbnails())
        data = await gateway.run_blocking(thumbnails.get, digest, str(path))
        return Response(data, media_type="image/jpeg", headers=IMAGE_HEADERS)
    return FileResponse(path, media_type=MEDIA_TYPES[fmt], headers=IMAGE_HEADERS)
