"""A bound on the request head (request line and headers) for uvicorn's httptools protocol.

httptools (llhttp) sets no limit of its own, so without this a client could send megabytes of
headers and have them buffered (64 MB of headers were answered 200). Bytes that arrive while a
request's head is still incomplete are counted; past ``max_head_bytes`` the connection gets
``431 Request Header Fields Too Large`` and is closed. (uvicorn's h11 protocol has the same idea
as ``h11_max_incomplete_event_size``; httptools is kept for its speed.)

Example:
    >>> uvicorn.Config(app, http=bounded_http_protocol(16 * 1024))
"""

from __future__ import annotations

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\nconnection: close\r\n"


def bounded_http_protocol(max_head_bytes: int) -> type[HttpToolsProtocol]:
    """uvicorn's httptools protocol, refusing request heads over ``max_head_bytes``."""

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _head_bytes: int | None = 0  # None: the current request's head is complete

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._head_bytes = 0

        def on_headers_complete(self) -> None:
            self._head_bytes = None
            super().on_headers_complete()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self._head_bytes is None or self.transport.is_closing():
                return
            self._head_bytes += len(data)
            if self._head_bytes > max_head_bytes:
                body = (
                    b'{"error": {"code": "headers_too_large", "message": "the request line and headers are larger '
                    b'than ' + str(max_head_bytes).encode() + b' bytes", "request_id": ""}}'
                )
                self.transport.write(_431 + b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
                self.transport.close()

    return BoundedHttpToolsProtocol
