"""The project's exception types.

Library code raises these; the edges map them to output: one readable line and a non-zero exit
on the command line (``imgclf.cli``), a status code and ``{"error": {"code", "message",
"request_id"}}`` over HTTP (``imgclf.gateway.errors``). Anything else escaping is a bug.
"""

from __future__ import annotations


class ImgclfError(Exception):
    """Base class: a problem the user can act on, described in one line."""

    exit_code = 2


class DatasetError(ImgclfError):
    """The dataset is missing, empty, malformed or unusable for the requested job."""


class ImageDecodeError(ImgclfError):
    """An image file or byte string is not a decodable image."""


class ConfigError(ImgclfError):
    """An option or combination of options is invalid (unknown model, bad image size...)."""


class RunDirError(ImgclfError):
    """A run directory is missing or incomplete (no checkpoint, no config...)."""


class ExportError(ImgclfError):
    """A model could not be exported or an export directory is unusable."""


class ServingError(ImgclfError):
    """A model-server request failed, with TF Serving's status code and message.

    ``code`` is a ``tensorflow.error.Code`` name (``"NOT_FOUND"``, ``"INVALID_ARGUMENT"``...). The
    REST layer turns it into TF Serving's HTTP status and ``{"error": message}``; the gRPC layer
    into the gRPC status with the same number.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class UploadError(ImgclfError):
    """An uploaded image was refused before reaching the model.

    ``code`` is a stable machine-readable reason (``empty_file``, ``unsupported_format``...) and
    ``status`` the HTTP status the gateway answers with.
    """

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class NotFoundError(ImgclfError):
    """A requested record does not exist (or is not visible to the caller)."""


class InvalidCursorError(ImgclfError):
    """A pagination cursor that this server did not hand out."""


class DatabaseUnavailableError(ImgclfError):
    """The database does not answer and the request cannot be served without it."""


class MonitoringError(ImgclfError):
    """A drift or quality check cannot run: no reference profile, no predictions, bad window."""


class RegistryError(ImgclfError):
    """A registry operation that cannot be done: unknown version, labelled version, nothing to roll back."""
