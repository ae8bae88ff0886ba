"""TF Serving's status codes: ``tensorflow.error.Code`` names, HTTP statuses and gRPC codes.

The HTTP table is TF Serving's ``ToHTTPStatusCode`` (``model_servers/http_server.cc``); gRPC
codes have the same numbers as TF's, so the mapping is by number.
"""

from __future__ import annotations

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import error_codes_pb2

from imgclf.errors import ServingError

HTTP_STATUS = {
    "OK": 200,
    "CANCELLED": 499,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 429,
    "FAILED_PRECONDITION": 400,
    "ABORTED": 409,
    "OUT_OF_RANGE": 400,
    "UNIMPLEMENTED": 501,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 500,
    "UNAUTHENTICATED": 401,
}

_GRPC_BY_NUMBER = {code.value[0]: code for code in grpc.StatusCode}
GRPC_MESSAGE_LIMIT = 1024


def http_status(code: str) -> int:
    return HTTP_STATUS.get(code, 500)


def grpc_code(code: str) -> grpc.StatusCode:
    return _GRPC_BY_NUMBER.get(error_codes_pb2.Code.Value(code), grpc.StatusCode.UNKNOWN)


def grpc_message(message: str) -> str:
    """TF Serving truncates gRPC error messages to 1024 characters (``grpc_status_util.cc``)."""
    if len(message) > GRPC_MESSAGE_LIMIT:
        return message[:GRPC_MESSAGE_LIMIT] + "...TRUNCATED"
    return message


def from_tensorflow(error: tf.errors.OpError) -> ServingError:
    """A TensorFlow op error (bad JPEG, wrong shape...) as a ServingError with the same code."""
    return ServingError(error_codes_pb2.Code.Name(error.error_code), error.message)
