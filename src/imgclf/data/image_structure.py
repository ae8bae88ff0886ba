"""Is an upload complete? Structural checks of the container, without decoding any pixels.

The model's signature decodes every image (``tf.io.decode_image``); the gateway only has to make
sure a file is whole before it joins a batch. Truncation is by far the most common damage
(interrupted uploads, cut-off files), and every supported container says where it ends:

* JPEG: the markers from SOI to the first start-of-scan (SOS) are walked segment by segment, then
  an end-of-image marker (EOI, ``FF D9``) must follow the scan data. Entropy-coded data escapes
  every ``FF`` byte, so an EOI after the first scan is a real marker, not pixel data. Bytes after
  the EOI (camera trailers, embedded videos) are allowed, as decoders allow them.
* PNG: the chunks are walked by their lengths up to ``IEND``.
* GIF: the last byte (after any zero padding) is the trailer ``;``.
* WebP: the RIFF header's size covers the file.
* BMP (rare, cheap to decode): Pillow decodes it, as before.

``declared_size`` reads a JPEG's or PNG's format and dimensions from the same headers (the
start-of-frame segment; IHDR), so the common uploads need no Pillow at all; anything unusual
(other formats, an animated PNG, a JPEG without a frame header before its scan) returns None and
is read by Pillow, as before.

What these checks cannot see (a complete file whose compressed data is broken) goes to the
model's decode. Where that decode refuses the file, the model server answers INVALID_ARGUMENT for
that request alone (its batching engine re-runs a failed batch request by request), which the
gateway answers as ``corrupt_image`` naming the image (``imgclf.gateway.service``). A JPEG whose
entropy-coded data is garbage but whose markers are intact is *not* refused: libjpeg (inside
TensorFlow, as inside TF Serving and Pillow) warns "Corrupt JPEG data" and returns what it could
decode, so such a file is classified like any image (usually with low confidence). A real TF
Serving fails a merged batch as a whole, so behind one a refused file can also fail the requests
batched with it; truncated files, the common case, never reach a batch.

The work per file is bounded: at most ``MAX_JPEG_SEGMENTS`` header segments and
``MAX_PNG_CHUNKS`` chunks are walked (a 10 MB file of empty segments is refused at once, not
walked for seconds), and the walk keeps nothing but its position.

Example:
    >>> check_structure(open("cat.jpg", "rb").read(), "JPEG")     # whole
    True
    >>> check_structure(open("cat.jpg", "rb").read()[:5000], "JPEG")
    Traceback (most recent call last):
    imgclf.errors.UploadError: the image is truncated: the JPEG ends before its end-of-image marker
"""

from __future__ import annotations

from collections.abc import Iterator

from imgclf.errors import UploadError

_STANDALONE_MARKERS = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RST0-7: no length field
_SOS, _EOI = 0xDA, 0xD9
_START_OF_FRAME = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOF0-15 less DHT, JPG, DAC
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Real files stay far below these (a JPEG has a dozen header segments, ICC profiles split in at most
# 255 more; a PNG of a few MB some hundreds of IDAT chunks); hostile files made of empty segments
# would otherwise cost seconds of CPU each.
MAX_JPEG_SEGMENTS = 1024
MAX_PNG_CHUNKS = 65536


def declared_size(data: bytes) -> tuple[str, int, int] | None:
    """(format, width, height) of a single-frame JPEG or PNG from its headers; None: ask Pillow.

    >>> declared_size(open("cat.jpg", "rb").read())
    ('JPEG', 500, 375)
    """
    if data.startswith(b"\xff\xd8\xff"):
        return _jpeg_size(data)
    if data.startswith(_PNG_SIGNATURE) and data[12:16] == b"IHDR" and len(data) >= 24:
        idat = data.find(b"IDAT")
        if data.find(b"acTL", 0, idat if idat > 0 else len(data)) >= 0:
            return None  # an animated PNG: Pillow counts its frames
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return ("PNG", width, height) if width and height else None
    return None


def _jpeg_size(data: bytes) -> tuple[str, int, int] | None:
    try:
        for marker, start, _ in _jpeg_segments(data):
            if marker in _START_OF_FRAME:
                if start + 9 > len(data):
                    return None
                height = int.from_bytes(data[start + 5 : start + 7], "big")
                width = int.from_bytes(data[start + 7 : start + 9], "big")
                return ("JPEG", width, height) if width and height else None
    except _TooComplex:
        raise  # refused here: Pillow's own walk of such a file costs seconds
    except UploadError:
        return None  # cut or broken headers: Pillow and check_structure say what is wrong
    return None  # no frame header before the scan


def check_structure(data: bytes, fmt: str) -> bool:
    """Raise ``UploadError`` (``truncated_image`` or ``corrupt_image``) if the file is not whole.

    Returns False for formats it has no structural check for (the caller decodes those).
    """
    check = _CHECKS.get(fmt)
    if check is None:
        return False
    check(data)
    return True


class _TooComplex(UploadError):
    """More structure than any real image has: refused before anything else reads it."""

    def __init__(self, message: str) -> None:
        super().__init__("corrupt_image", f"the image does not decode: {message}")


def _truncated(message: str) -> UploadError:
    return UploadError("truncated_image", f"the image is truncated: {message}")


def _corrupt(message: str) -> UploadError:
    return UploadError("corrupt_image", f"the image does not decode: {message}")


def _jpeg_segments(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(marker, start, end) of each header segment from SOI to the first scan's (SOS, the last).

    Raises ``UploadError`` where the headers are cut short or are not JPEG markers.
    """
    position, size, segments = 2, len(data), 0  # after SOI (the format was recognised from it)
    while True:
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _TooComplex(f"the JPEG has more than {MAX_JPEG_SEGMENTS} header segments before its image data")
        if position + 2 > size:
            raise _truncated("the JPEG ends inside its headers")
        if data[position] != 0xFF:
            raise _corrupt(f"no JPEG marker at byte {position}")
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte before a marker
            position += 1
            continue
        if marker in _STANDALONE_MARKERS:
            position += 2
            continue
        if marker == _EOI:
            raise _corrupt("the JPEG ends before any image data")
        if position + 4 > size:
            raise _truncated("the JPEG ends inside its headers")
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if length < 2:
            raise _corrupt(f"a JPEG segment at byte {position} declares length {length}")
        end = position + 2 + length
        yield marker, position, end
        if marker == _SOS:
            return
        position = end


def _check_jpeg(data: bytes) -> None:
    scan_start = 0
    for _, _, end in _jpeg_segments(data):  # streamed: the last segment is the scan's header
        scan_start = end
    if data.rfind(b"\xff\xd9", scan_start) < 0:
        raise _truncated("the JPEG ends before its end-of-image marker")


def _check_png(data: bytes) -> None:
    position, size, chunks = 8, len(data), 0  # after the signature
    while position + 8 <= size:
        chunks += 1
        if chunks > MAX_PNG_CHUNKS:
            raise _TooComplex(f"the PNG has more than {MAX_PNG_CHUNKS} chunks")
        kind = data[position + 4 : position + 8]
        if not kind.isalpha():
            raise _corrupt(f"no PNG chunk type at byte {position + 4}")
        if kind == b"IEND" and position + 12 <= size:
            return
        position += 12 + int.from_bytes(data[position : position + 4], "big")  # length, type, data, CRC
    raise _truncated("the PNG ends before its IEND chunk")


def _check_gif(data: bytes) -> None:
    if not data.rstrip(b"\x00").endswith(b";"):
        raise _truncated("the GIF ends without its trailer")


def _check_webp(data: bytes) -> None:
    declared = int.from_bytes(data[4:8], "little") + 8
    if len(data) < declared:
        raise _truncated(f"the WebP declares {declared} bytes and has {len(data)}")


_CHECKS = {"JPEG": _check_jpeg, "PNG": _check_png, "GIF": _check_gif, "WEBP": _check_webp}
