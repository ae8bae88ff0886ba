"""Where the gateway's images are classified: in-process, or a model server over TF Serving's protocol
or the Open Inference Protocol (KServe v2).

- ``LocalBackend``: loads the registry's model in this process with ``imgclf serve``'s own
  manager and batching engine (the embedded default).
- ``GrpcBackend`` (``grpc://HOST:8500``) and ``RestBackend`` (``http://HOST:8501``): talk to
  ``imgclf serve`` or a real TF Serving. gRPC reports the version that answered; over REST the
  gateway asks for the newest AVAILABLE version and addresses it explicitly, so the answer and
  the recorded version always agree.
- ``V2GrpcBackend`` (``v2+grpc://HOST:8500``) and ``V2RestBackend`` (``v2+http://HOST:8501``): the
  Open Inference Protocol, to ``imgclf serve``, Triton, KServe or MLServer (gRPC only: MLServer's
  REST lacks the binary tensor data extension). Images go as one BYTES tensor (gRPC
  ``raw_input_contents``; REST's binary extension) and every answer names the version that
  produced it. The AVAILABLE versions are the model metadata's ``versions``. A version label goes
  where OIP takes a version: ``imgclf serve`` resolves it, servers without labels refuse it.

Every backend sends the export's ``serving_default`` input (``image_bytes``) and returns the
class scores and the export's own decision (``class_ids``: argmax, or the binary threshold baked in
at export), what monitoring stores (``embedding_projection`` and ``input_statistics``; None for
exports made before they existed) and the version that produced them; class names and the decision threshold come
from that version's model card in the registry (``imgclf.contract.read_model_card``).
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from imgclf.contract import (
    CLASSIFICATION_OUTPUTS,
    INPUT_BYTES,
    MONITORING_OUTPUTS,
    OUTPUT_CLASS_IDS,
    OUTPUT_EMBEDDING_PROJECTION,
    OUTPUT_INPUT_STATISTICS,
    OUTPUT_SCORES,
)
from imgclf.contract import read_model_card as read_card
from imgclf.errors import ExportError, ServingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BackendAnswer:
    model_name: str
    model_version: int
    scores: np.ndarray  # [images, classes]
    class_ids: np.ndarray  # [images]: the export's decision
    embeddings: np.ndarray | None = None  # [images, 32]: the export's embedding_projection, if it has one
    statistics: np.ndarray | None = None  # [images, 12]: the export's input_statistics, if it has one


class ModelBackend(Protocol):
    model_name: str

    def classify(
        self, images: list[bytes], version: int | None = None, label: str | None = None, background: bool = False
    ) -> BackendAnswer:
        """``background``: work nobody waits for (shadow copies); it must not delay answered requests."""
        ...

    def is_available(self, version: int) -> bool:
        """Whether ``version`` can answer now (the gateway routes only to such versions)."""
        ...

    def ready(self) -> bool: ...

    def close(self) -> None: ...


class AvailableVersions:
    """A model server's AVAILABLE versions, asked for at most once per ``ttl`` seconds.

    The router asks before each request whether the stable or canary version is loaded; this keeps
    that to one status call a second. If the model server cannot be asked, the last known set is
    kept (requests then fail or succeed on their own); before any answer the set is empty.
    """

    def __init__(self, fetch: Callable[[], set[int]], ttl: float = 1.0) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._lock = threading.Lock()
        self._checked: float | None = None
        self._versions: set[int] = set()

    def get(self) -> set[int]:
        with self._lock:
            now = time.monotonic()
            if self._checked is None or now - self._checked > self._ttl:
                self._checked = now
                try:
                    self._versions = self._fetch()
                except ServingError as error:
                    log.warning("could not ask the model server for its versions: %s", error)
            return self._versions


class RemoteVersions:
    """``is_available`` and ``ready`` for backends that ask a model server (``_available_versions``)."""

    _available: AvailableVersions

    def _available_versions(self) -> set[int]:
        raise NotImplementedError

    def is_available(self, version: int) -> bool:
        return version in self._available.get()

    def ready(self) -> bool:
        try:
            return bool(self._available_versions())
        except ServingError:
            return False


@dataclass(frozen=True)
class ModelCard:
    classes: list[str]
    threshold: float | None


def read_model_card(registry: Path, name: str, version: int) -> ModelCard:
    """Classes and threshold of one exported version (the registry is the source of truth)."""
    try:
        card = read_card(Path(registry) / name / str(version))
    except ExportError as error:
        raise ServingError("FAILED_PRECONDITION", f"{name} version {version}: {error}") from None
    threshold = card.get("decision", {}).get("threshold")
    return ModelCard(list(card["classes"]), threshold)


class LocalBackend:
    """The registry's model served in this process by the model server's engine (``EmbeddedServer``).

    It follows the registry's state (``imgclf models promote``/``rollback``/``label``): every
    ``poll_seconds`` it applies the same model config ``imgclf models tfserving-config`` writes
    (whole labelled versions and the previous stable loaded; labels set), which loads new versions
    before unloading old ones and never unloads the one serving for one that failed.
    """

    def __init__(
        self,
        registry: Path,
        model_name: str,
        poll_seconds: float = 1.0,
        timeout: float = 30,
        batching_parameters_file: Path | None = None,
    ) -> None:
        from imgclf.registry.store import Registry
        from imgclf.serving.embedded import EmbeddedServer
        from imgclf.serving.options import load_batching_parameters

        self.model_name = model_name
        self.timeout = timeout
        batching = load_batching_parameters(batching_parameters_file) if batching_parameters_file else None
        self._server = EmbeddedServer(Path(registry) / model_name, model_name, batching)
        self.serving_metrics = self._server.metrics
        self._registry = Registry(registry)
        self._applied: str | None = None
        self._refused: str | None = None
        self._stop = threading.Event()
        self.follow_registry()
        self._server.start_polling(poll_seconds)
        self._follower = threading.Thread(
            target=self._follow, args=(poll_seconds,), daemon=True, name="imgclf-registry"
        )
        self._follower.start()

    def follow_registry(self) -> None:
        """Apply the registry's current state to the loaded versions (no-op when unchanged)."""
        from imgclf.errors import ImgclfError
        from imgclf.registry.tfserving import model_server_config

        try:
            config = model_server_config(self._registry, names=[self.model_name])
            text = str(config)
            if text == self._applied:
                return
            self._server.apply_config(config)
        except ImgclfError as error:  # e.g. a labelled version that does not load: keep serving, retry
            if str(error) != self._refused:  # said once, not every second
                log.warning("registry state of %s not applied yet: %s", self.model_name, error)
                self._refused = str(error)
            return
        self._applied, self._refused = text, None

    def _follow(self, interval: float) -> None:
        while not self._stop.wait(interval):
            try:
                self.follow_registry()
            except Exception:
                log.exception("following the registry failed")

    def is_available(self, version: int) -> bool:
        return version in self._server.available_versions()

    def classify(
        self, images: list[bytes], version: int | None = None, label: str | None = None, background: bool = False
    ) -> BackendAnswer:
        """``background=True`` (shadow copies) runs the model in the calling thread, outside the
        batching queue, so answered requests never wait behind it."""
        batch = np.empty(len(images), dtype=object)
        batch[:] = images
        answered, outputs = self._server.run(
            {INPUT_BYTES: batch},
            version,
            label,
            CLASSIFICATION_OUTPUTS + MONITORING_OUTPUTS,
            timeout=self.timeout,
            background=background,
        )
        return _answer(self.model_name, answered, outputs)

    def ready(self) -> bool:
        return self._server.ready()

    def close(self) -> None:
        self._stop.set()
        self._server.close()


class GrpcBackend(RemoteVersions):
    """A model server's gRPC PredictionService (official stubs)."""

    def __init__(self, target: str, model_name: str, timeout: float = 30) -> None:
        import grpc
        from tensorflow_serving.apis import prediction_service_pb2_grpc

        self.model_name = model_name
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.max_send_message_length", 2**31 - 1),
            # Every address the name resolves to (a headless Service: one per model-server pod) gets
            # requests in turn; with one address this is the same as gRPC's default.
            ("grpc.lb_policy_name", "round_robin"),
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._available = AvailableVersions(self._available_versions)

    def classify(
        self, images: list[bytes], version: int | None = None, label: str | None = None, background: bool = False
    ) -> BackendAnswer:  # background work is scheduled by the model server like any request
        import grpc
        from tensorflow_serving.apis import predict_pb2

        from imgclf.serving.tensors import to_numpy, to_tensor_proto

        request = predict_pb2.PredictRequest()
        request.model_spec.name = self.model_name
        if version is not None:
            request.model_spec.version.value = version
        elif label:
            request.model_spec.version_label = label
        batch = np.empty(len(images), dtype=object)
        batch[:] = images
        request.inputs[INPUT_BYTES].CopyFrom(to_tensor_proto(batch))
        # No output_filter: an export without the monitoring outputs would refuse one that names them.
        try:
            response = self._stub.Predict(request, timeout=self.timeout)
        except grpc.RpcError as error:
            raise ServingError(error.code().name, error.details() or str(error.code())) from None
        names = [name for name in (*CLASSIFICATION_OUTPUTS, *MONITORING_OUTPUTS) if name in response.outputs]
        outputs = {name: to_numpy(response.outputs[name]) for name in names}
        return _answer(self.model_name, response.model_spec.version.value, outputs)

    def _available_versions(self) -> set[int]:
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2, model_service_pb2_grpc

        try:
            status = model_service_pb2_grpc.ModelServiceStub(self._channel).GetModelStatus(
                get_model_status_pb2.GetModelStatusRequest(model_spec={"name": self.model_name}), timeout=2
            )
        except grpc.RpcError as error:
            raise ServingError(error.code().name, error.details() or str(error.code())) from None
        available = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return {int(s.version) for s in status.model_version_status if s.state == available}

    def close(self) -> None:
        self._channel.close()


class RestBackend(RemoteVersions):
    """A model server's REST API; versions are resolved first so the answering version is known."""

    def __init__(self, base_url: str, model_name: str, timeout: float = 30, version_ttl: float = 1.0) -> None:
        import httpx

        self.model_name = model_name
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._available = AvailableVersions(self._available_versions, ttl=version_ttl)

    def _request(self, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ServingError("UNAVAILABLE", f"model server unreachable: {error}") from None
        if response.status_code != 200:
            code = {404: "NOT_FOUND", 400: "INVALID_ARGUMENT", 503: "UNAVAILABLE"}.get(response.status_code, "INTERNAL")
            try:
                message = response.json()["error"]
            except (ValueError, KeyError):
                message = response.text[:200]
            raise ServingError(code, message)
        return response.json()

    def _available_versions(self) -> set[int]:
        status = self._request("GET", f"/v1/models/{self.model_name}")
        return {int(s["version"]) for s in status["model_version_status"] if s["state"] == "AVAILABLE"}

    def latest_version(self) -> int:
        available = self._available.get()
        if not available:
            raise ServingError("UNAVAILABLE", f"no AVAILABLE version of {self.model_name}")
        return max(available)

    def classify(
        self, images: list[bytes], version: int | None = None, label: str | None = None, background: bool = False
    ) -> BackendAnswer:  # background work is scheduled by the model server like any request
        if label:
            metadata = self._request("GET", f"/v1/models/{self.model_name}/labels/{label}/metadata")
            version = int(metadata["model_spec"]["version"])
        if version is None:
            version = self.latest_version()
        body = {"instances": [{"b64": base64.b64encode(image).decode()} for image in images]}
        answer = self._request("POST", f"/v1/models/{self.model_name}/versions/{version}:predict", json=body)
        rows = answer["predictions"]
        outputs = {
            name: np.array([row[name] for row in rows], dtype=np.int64 if name == OUTPUT_CLASS_IDS else np.float32)
            for name in (*CLASSIFICATION_OUTPUTS, *MONITORING_OUTPUTS)
            if name in CLASSIFICATION_OUTPUTS or (rows and name in rows[0])
        }
        return _answer(self.model_name, version, outputs)

    def close(self) -> None:
        self._http.close()


WANTED_OUTPUTS = (*CLASSIFICATION_OUTPUTS, *MONITORING_OUTPUTS)
V2_HEADER_LENGTH = "Inference-Header-Content-Length"


def _version_of(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ServingError("INTERNAL", f"the model server answered a version that is not a number: {text!r}") from None


class V2GrpcBackend(RemoteVersions):
    """A model server's Open Inference Protocol gRPC service (``inference.GRPCInferenceService``)."""

    def __init__(self, target: str, model_name: str, timeout: float = 30) -> None:
        import grpc
        from tritonclient.grpc import service_pb2_grpc

        self.model_name = model_name
        self.timeout = timeout
        options = [
            ("grpc.max_receive_message_length", 2**31 - 1),
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.lb_policy_name", "round_robin"),  # every model-server pod behind a headless Service
        ]
        self._channel = grpc.insecure_channel(target, options=options)
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self._available = AvailableVersions(self._available_versions)

    def _call(self, method: str, request, timeout: float):  # type: ignore[no-untyped-def]
        import grpc

        try:
            return getattr(self._stub, method)(request, timeout=timeout)
        except grpc.RpcError as error:
            raise ServingError(error.code().name, error.details() or str(error.code())) from None

    def classify(
        self, images: list[bytes], version: int | None = None, label: str | None = None, background: bool = False
    ) -> BackendAnswer:  # background work is scheduled by the model server like any request
        from tritonclient.grpc import service_pb2

        from imgclf.serving.tensors import from_raw, serialize_bytes

        batch = np.empty(len(images), dtype=object)
        batch[:] = images
        request = service_pb2.ModelInferRequest(
            model_name=self.model_name, model_version=str(version) if version is not None else (label or "")
        )
        request.inputs.add(name=INPUT_BYTES, datatype="BYTES", shape=[len(images)])
        request.raw_input_contents.append(serialize_bytes(batch))
        # No requested outputs: an export without the monitoring outputs would refuse one that names them.
        response = self._call("ModelInfer", request, self.timeout)
        outputs = {}
        for index, output in enumerate(response.outputs):
            if output.name in WANTED_OUTPUTS:
                outputs[output.name] = from_raw(
                    response.raw_output_contents[index], output.datatype, list(output.shape)
                )
        return _answer(self.model_name, _version_of(response.model_version), outputs)

    def _available_versions(self) -> set[int]:
        from tritonclient.grpc import service_pb2

        metadata = self._call("ModelMetadata", service_pb2.ModelMetadataRequest(name=self.model_name), timeout=2)
        return {_version_of(v) for v in metadata.versions}

    def close(self) -> None:
        self._channel.close()


class V2RestBackend(RemoteVersions):
    """A model server's Open Inference Protocol REST API (``/v2``), images in the binary tensor extension."""

    def __init__(self, base_url: str, model_name: str, timeout: float = 30, version_ttl: float = 1.0) -> None:
        import httpx

        self.model_name = model_name
        self._http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        self._available = AvailableVersions(self._available_versions, ttl=version_ttl)

    def _request(self, method: str, path: str, **kwargs):  # type: ignore[no-untyped-def]
        import httpx

        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ServingError("UNAVAILABLE", f"model server unreachable: {error}") from None
        if response.status_code != 200:
            code = {400: "INVALID_ARGUMENT", 404: "NOT_FOUND", 501: "UNIMPLEMENTED", 503: "UNAVAILABLE"}.get(
                response.status_code, "INTERNAL"
            )
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text[:200]
            raise ServingError(code, message)
        return response

    def _available_versions(self) -> set[int]:
        metadata = self._request("GET", f"/v2/models/{self.model_name}").json()
        return {_version_of(str(v)) for v in metadata.get("versions", [])}

    def classify(
        self, images: list[bytes], version: int | None = None, label: str | None = None, background: bool = False
    ) -> BackendAnswer:  # background work is scheduled by the model server like any request
        import json

        from imgclf.serving.tensors import OIP_DTYPES, from_raw, serialize_bytes

        batch = np.empty(len(images), dtype=object)
        batch[:] = images
        data = serialize_bytes(batch)
        header = json.dumps(
            {
                "inputs": [
                    {"name": INPUT_BYTES, "shape": [len(images)], "datatype": "BYTES",
                     "parameters": {"binary_data_size": len(data)}},
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()  # fmt: skip
        path = f"/v2/models/{self.model_name}"
        if version is not None or label:
            path += f"/versions/{version if version is not None else label}"
        response = self._request(
            "POST",
            path + "/infer",
            content=header + data,
            headers={"Content-Type": "application/octet-stream", V2_HEADER_LENGTH: str(len(header))},
        )
        body = response.content
        length = int(response.headers.get(V2_HEADER_LENGTH, len(body)))
        document = json.loads(body[:length])
        offset, outputs = length, {}
        for output in document["outputs"]:
            size = output.get("parameters", {}).get("binary_data_size")
            if size is not None:
                value = from_raw(body[offset : offset + size], output["datatype"], output["shape"])
                offset += size
            elif output["datatype"] != "BYTES":  # a server that answered JSON after all
                value = np.array(output["data"], dtype=OIP_DTYPES[output["datatype"]]).reshape(output["shape"])
            else:
                continue
            if output["name"] in WANTED_OUTPUTS:
                outputs[output["name"]] = value
        return _answer(self.model_name, _version_of(str(document["model_version"])), outputs)

    def close(self) -> None:
        self._http.close()


def _answer(model_name: str, version: int, outputs: dict[str, np.ndarray]) -> BackendAnswer:
    return BackendAnswer(
        model_name,
        version,
        outputs[OUTPUT_SCORES],
        outputs[OUTPUT_CLASS_IDS],
        outputs.get(OUTPUT_EMBEDDING_PROJECTION),
        outputs.get(OUTPUT_INPUT_STATISTICS),
    )


def create_backend(
    spec: str, registry: Path, model_name: str, timeout: float = 30, batching_parameters_file: Path | None = None
) -> ModelBackend:
    """``local``, ``grpc://HOST:PORT`` or ``http(s)://HOST:PORT`` (TF Serving's protocol), or
    ``v2+grpc://HOST:PORT`` or ``v2+http(s)://HOST:PORT`` (the Open Inference Protocol)."""
    if spec == "local":
        return LocalBackend(registry, model_name, timeout=timeout, batching_parameters_file=batching_parameters_file)
    if spec.startswith("grpc://"):
        return GrpcBackend(spec.removeprefix("grpc://"), model_name, timeout=timeout)
    if spec.startswith(("http://", "https://")):
        return RestBackend(spec, model_name, timeout=timeout)
    if spec.startswith("v2+grpc://"):
        return V2GrpcBackend(spec.removeprefix("v2+grpc://"), model_name, timeout=timeout)
    if spec.startswith(("v2+http://", "v2+https://")):
        return V2RestBackend(spec.removeprefix("v2+"), model_name, timeout=timeout)
    from imgclf.errors import ConfigError

    raise ConfigError(
        "backend must be local, grpc://HOST:PORT or http://HOST:PORT (TF Serving's protocol), or "
        f"v2+grpc://HOST:PORT or v2+http://HOST:PORT (the Open Inference Protocol) (got {spec!r})"
    )
