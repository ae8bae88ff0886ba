"""``GetModelStatus`` and ``GetModelMetadata`` responses, shared by gRPC and REST.

REST prints them as TF Serving does: status with ``MessageToJson(...,
always_print_fields_with_no_presence=True)``; metadata hand-assembled with proto field names and
the double ``signature_def`` nesting (``reference/tf-serving.md`` §1.6).
"""

from __future__ import annotations

import json

from google.protobuf import json_format
from tensorflow.core.protobuf import error_codes_pb2
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from imgclf.errors import ServingError
from imgclf.serving.manager import ModelManager
from imgclf.serving.servable import ServableVersion

SIGNATURE_DEF = "signature_def"


def model_status(manager: ModelManager, name: str, version: int | None) -> get_model_status_pb2.GetModelStatusResponse:
    response = get_model_status_pb2.GetModelStatusResponse()
    for status in manager.status(name, version):
        item = response.model_version_status.add()
        item.version = status.version
        item.state = get_model_status_pb2.ModelVersionStatus.State.Value(status.state)
        item.status.error_code = error_codes_pb2.Code.Value(status.error_code)
        item.status.error_message = status.error_message
    return response


def status_json(response: get_model_status_pb2.GetModelStatusResponse) -> bytes:
    return json_format.MessageToJson(response, always_print_fields_with_no_presence=True).encode()


def signature_def_map(servable: ServableVersion) -> get_model_metadata_pb2.SignatureDefMap:
    signatures = get_model_metadata_pb2.SignatureDefMap()
    for key, definition in servable.signature_defs.items():
        signatures.signature_def[key].CopyFrom(definition)
        signatures.signature_def[key].ClearField("defaults")  # TF Serving 2.20+ omits them
    return signatures


def model_metadata(servable: ServableVersion, fields: list[str]) -> get_model_metadata_pb2.GetModelMetadataResponse:
    if not fields:
        raise ServingError("INVALID_ARGUMENT", "GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF:
            raise ServingError("INVALID_ARGUMENT", f"Metadata field {field} is not supported")
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    response.model_spec.name = servable.name
    response.model_spec.version.value = servable.version
    response.metadata[SIGNATURE_DEF].Pack(signature_def_map(servable))
    return response


def metadata_json(servable: ServableVersion) -> bytes:
    document = {
        "model_spec": {"name": servable.name, "signature_name": "", "version": str(servable.version)},
        "metadata": {
            SIGNATURE_DEF: json_format.MessageToDict(
                signature_def_map(servable),
                preserving_proto_field_name=True,
                always_print_fields_with_no_presence=True,
            )
        },
    }
    return json.dumps(document, indent=1).encode()
