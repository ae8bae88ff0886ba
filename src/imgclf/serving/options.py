"""The model server's settings and TF Serving's two text-format configuration files.

``ServerOptions`` holds every ``imgclf serve`` flag. ``load_model_config`` reads a
``--model-config-file`` (``ModelServerConfig`` text proto, from the official
``tensorflow-serving-api`` package) or builds the one-model config that ``--model-name`` and
``--model-base-path`` describe. ``load_batching_parameters`` reads a
``--batching-parameters-file``: the ``BatchingParameters`` message is not in that package, so it
is declared here with TF Serving's field names and numbers, and files written for TF Serving
parse unchanged.

Example ``--batching-parameters-file``::

    max_batch_size { value: 32 }
    batch_timeout_micros { value: 2000 }
    max_enqueued_batches { value: 100 }
    num_batch_threads { value: 2 }
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format, wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from imgclf.errors import ConfigError

DEFAULT_THREAD_POOL_NAME = "model_server_batch_threads"


@dataclass(frozen=True)
class BatchingParameters:
    """TF Serving's batching parameters, with its defaults (``shared_batch_scheduler.h``)."""

    max_batch_size: int = 1000
    batch_timeout_micros: int = 0
    max_enqueued_batches: int = 10
    num_batch_threads: int = field(default_factory=lambda: os.cpu_count() or 1)
    thread_pool_name: str = DEFAULT_THREAD_POOL_NAME
    allowed_batch_sizes: tuple[int, ...] = ()
    pad_variable_length_inputs: bool = False

    def __post_init__(self) -> None:
        if self.max_batch_size < 1 or self.num_batch_threads < 1 or self.max_enqueued_batches < 1:
            raise ConfigError("max_batch_size, num_batch_threads and max_enqueued_batches must be at least 1")
        if self.batch_timeout_micros < 0:
            raise ConfigError("batch_timeout_micros must not be negative")
        sizes = self.allowed_batch_sizes
        if sizes and (list(sizes) != sorted(set(sizes)) or sizes[-1] != self.max_batch_size):
            raise ConfigError(
                "allowed_batch_sizes must be increasing and its last entry must equal max_batch_size "
                f"({list(sizes)} vs {self.max_batch_size})"
            )


# The two batching defaults, and why they differ. In process (the gateway's local backend,
# ``EmbeddedServer``) a batch runs as soon as the scheduler has one (no timeout: concurrent requests
# queue up on their own) and the queue is deep (a burst waits instead of failing). A generated TF
# Serving config (``imgclf models tfserving-config``) is for a separate server that serves many
# gateways and whose core count the generator cannot know: 4 threads, and 2 ms to fill batches of 32.
EMBEDDED_BATCHING = BatchingParameters(max_batch_size=64, max_enqueued_batches=1000)
TF_SERVING_BATCHING = BatchingParameters(
    max_batch_size=32, batch_timeout_micros=2000, max_enqueued_batches=100, num_batch_threads=4
)


@dataclass(frozen=True)
class ServerOptions:
    """Everything ``imgclf serve`` can be told; names follow TF Serving's flags."""

    model_name: str | None = None
    model_base_path: Path | None = None
    model_config_file: Path | None = None
    model_config_file_poll_wait_seconds: float = 0
    file_system_poll_wait_seconds: float = 1
    rest_api_port: int = 8501
    grpc_port: int = 8500
    host: str = "0.0.0.0"
    rest_api_timeout_in_ms: int = 30000
    enable_batching: bool = False
    batching_parameters: BatchingParameters | None = None
    enable_model_warmup: bool = True
    num_request_iterations_for_warmup: int = 1
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    # Handler threads mostly wait for a batch to run, so there must be at least as many as the
    # concurrent requests that should share a batch (TF Serving's 4 × cores caps batches at 8 on 2 cores).
    grpc_max_threads: int = field(default_factory=lambda: max(128, 4 * (os.cpu_count() or 1)))
    shutdown_grace_seconds: float = 30
    # TF Serving's --prefer_tflite_model: a version holding model.tflite is answered by the LiteRT
    # interpreter (XNNPACK; tensorflow_intra_op_parallelism threads, 0: every core), its SavedModel
    # serving when the .tflite cannot load (imgclf.serving.litert).
    prefer_tflite_model: bool = False


def load_model_config(options: ServerOptions) -> model_server_config_pb2.ModelServerConfig:
    """The ModelServerConfig to serve: from ``--model-config-file`` or from name and base path."""
    if options.model_config_file is not None:
        return parse_model_config(read_text(options.model_config_file), str(options.model_config_file))
    if not options.model_base_path:
        raise ConfigError("give --model-base-path (with --model-name) or --model-config-file")
    config = model_server_config_pb2.ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = options.model_name or "default"
    model.base_path = str(options.model_base_path)
    model.model_platform = "tensorflow"
    return config


def parse_model_config(text: str, source: str = "model config") -> model_server_config_pb2.ModelServerConfig:
    config = model_server_config_pb2.ModelServerConfig()
    try:
        text_format.Parse(text, config)
    except text_format.ParseError as error:
        raise ConfigError(f"{source}: {error}") from None
    validate_model_config(config, source)
    return config


def validate_model_config(config: model_server_config_pb2.ModelServerConfig, source: str = "model config") -> None:
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: only model_config_list is supported")
    names = [model.name for model in config.model_config_list.config]
    if len(set(names)) != len(names):
        raise ConfigError(f"{source}: a model name appears twice")
    for model in config.model_config_list.config:
        if not model.name or not model.base_path:
            raise ConfigError(f"{source}: every model needs a name and a base_path")
        if model.model_platform not in ("", "tensorflow"):
            raise ConfigError(f"{source}: model {model.name}: platform {model.model_platform!r} is not supported")
        for label in model.version_labels:
            if not label.replace("_", "").isalnum():
                raise ConfigError(f"{source}: model {model.name}: label {label!r} must match [a-zA-Z0-9_]+")


def _batching_parameters_class() -> type:
    """Declare ``tensorflow.serving.BatchingParameters`` (``session_bundle_config.proto``) at run time."""
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    proto = descriptor_pb2.FileDescriptorProto(
        name="imgclf/serving/batching_parameters.proto",
        package="tensorflow.serving",
        syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"],
    )
    message = proto.message_type.add(name="BatchingParameters")
    optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
    for number, (name, wrapper) in enumerate(
        [
            ("max_batch_size", "Int64Value"),
            ("batch_timeout_micros", "Int64Value"),
            ("max_enqueued_batches", "Int64Value"),
            ("num_batch_threads", "Int64Value"),
            ("thread_pool_name", "StringValue"),
        ],
        start=1,
    ):
        message.field.add(
            name=name,
            number=number,
            label=optional,
            type=descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE,
            type_name=f".google.protobuf.{wrapper}",
        )
    message.field.add(
        name="allowed_batch_sizes",
        number=6,
        label=descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED,
        type=descriptor_pb2.FieldDescriptorProto.TYPE_INT64,
    )
    message.field.add(
        name="pad_variable_length_inputs", number=7, label=optional, type=descriptor_pb2.FieldDescriptorProto.TYPE_BOOL
    )
    pool.Add(proto)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("tensorflow.serving.BatchingParameters"))


def parse_batching_parameters(text: str, source: str = "batching parameters") -> BatchingParameters:
    message = _batching_parameters_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as error:
        raise ConfigError(f"{source}: {error}") from None
    values: dict = {}
    for name in ("max_batch_size", "batch_timeout_micros", "max_enqueued_batches", "num_batch_threads"):
        if message.HasField(name):
            values[name] = getattr(message, name).value
    if message.HasField("thread_pool_name"):
        values["thread_pool_name"] = message.thread_pool_name.value
    values["allowed_batch_sizes"] = tuple(message.allowed_batch_sizes)
    values["pad_variable_length_inputs"] = message.pad_variable_length_inputs
    try:
        return BatchingParameters(**values)
    except ConfigError as error:
        raise ConfigError(f"{source}: {error}") from None


def load_batching_parameters(path: Path) -> BatchingParameters:
    return parse_batching_parameters(read_text(path), str(path))


def read_text(path: Path) -> str:
    try:
        return Path(path).read_text()
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from None
