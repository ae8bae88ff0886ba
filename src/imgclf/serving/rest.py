"""TF Serving's REST API (``/v1/models/...``) as a Starlette app, plus health and metrics.

Paths, verbs, status codes and ``{"error": ...}`` bodies follow ``http_rest_api_handler.cc``:

    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]            model status
    GET  /v1/models/{name}[/versions/{v} | /labels/{l}]/metadata   signature defs
    POST /v1/models/{name}[/versions/{v} | /labels/{l}]:predict    (also :classify, :regress)

The Open Inference Protocol's ``/v2/...`` routes (``open_inference_rest``) share the port.

Besides TF Serving's API: ``GET /healthz`` (the process answers) and ``GET /readyz`` (every
configured model has an AVAILABLE version; 503 otherwise), and Prometheus metrics at
``/monitoring/prometheus/metrics``.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
import re
import time
from concurrent.futures import Future

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from imgclf.errors import ServingError
from imgclf.serving import json_tensors
from imgclf.serving.model_info import metadata_json, model_status, status_json
from imgclf.serving.open_inference import OpenInference
from imgclf.serving.open_inference_rest import OpenInferenceRest
from imgclf.serving.predictor import ModelAddress, Predictor, serialized_examples
from imgclf.serving.servable import DEFAULT_SIGNATURE
from imgclf.serving.status import http_status

log = logging.getLogger(__name__)
JSON = "application/json"
METRICS_PATH = "/monitoring/prometheus/metrics"
_ADDRESS = r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?"
PREDICTION_PATH = re.compile(_ADDRESS + r":(classify|regress|predict)", re.IGNORECASE)
STATUS_PATH = re.compile(r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?", re.I)
V1_PATH = re.compile(r"/v1/.*", re.IGNORECASE | re.DOTALL)


def _json(body: bytes, status: int = 200) -> Response:
    return Response(body, status_code=status, media_type=JSON)


def _error(error: ServingError) -> Response:
    return _json(json_tensors.error_body(error.message), http_status(error.code))


def _address(name: str, version: str | None, label: str | None) -> ModelAddress:
    return ModelAddress(name, int(version) if version else None, label or None)


class RestApi:
    """The handlers; ``app`` is the ASGI application."""

    def __init__(self, predictor: Predictor, timeout_seconds: float) -> None:
        self.predictor = predictor
        self.manager = predictor.manager
        self.metrics = predictor.metrics
        self.timeout = timeout_seconds
        self.open_inference = OpenInferenceRest(OpenInference(predictor), timeout_seconds)
        routes = [
            Route("/healthz", self.live),
            Route("/readyz", self.ready),
            Route(METRICS_PATH, self.prometheus),
            *self.open_inference.routes,
            Route("/{path:path}", self.v1, methods=["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD"]),
        ]
        self.app = Starlette(routes=routes)

    async def live(self, request: Request) -> Response:
        return _json(b'{"status": "alive"}')

    async def ready(self, request: Request) -> Response:
        models = {}
        for name in self.manager.model_names():
            try:
                models[name] = [s.version for s in self.manager.status(name) if s.state == "AVAILABLE"]
            except ServingError:
                models[name] = []
        ready = all(models.values())
        body = {"status": "ready" if ready else "not ready", "available_versions": models}
        return _json(json.dumps(body).encode(), 200 if ready else 503)

    async def prometheus(self, request: Request) -> Response:
        return Response(self.metrics.exposition(), media_type="text/plain")

    async def v1(self, request: Request) -> Response:
        path, method = request.url.path, request.method
        if not V1_PATH.fullmatch(path):
            return Response("Not Found", status_code=404, media_type="text/plain")
        try:
            if method == "POST" and (match := PREDICTION_PATH.fullmatch(path)):
                name, version, label, verb = match.groups()
                return await self._inference(request, _address(name, version, label), verb.lower())
            if method == "GET" and (match := STATUS_PATH.fullmatch(path)):
                name, version, label, metadata = match.groups()
                if not name:
                    raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
                address = _address(name, version, label)
                if metadata:
                    return _json(metadata_json(self.predictor.servable(address)))
                return _json(status_json(model_status(self.manager, address.name, address.version)))
            raise ServingError("INVALID_ARGUMENT", f"Malformed request: {method} {path}")
        except ServingError as error:
            return _error(error)

    async def _inference(self, request: Request, address: ModelAddress, verb: str) -> Response:
        started = time.perf_counter()
        code = "OK"
        try:
            body = await request.body()
            if request.headers.get("content-encoding", "").lower() == "gzip":
                try:
                    body = gzip.decompress(body)
                except (OSError, EOFError):
                    raise ServingError("INVALID_ARGUMENT", "Unable to gunzip the request body") from None
            servable = self.predictor.servable(address)
            document = json_tensors.parse_body(body)
            signature_name = json_tensors.signature_name(document)
            if verb == "predict":
                key = signature_name or DEFAULT_SIGNATURE
                signature = servable.signatures.get(key)
                if signature is None:  # REST checks before decoding, with its own message (TF Serving's GetInfoMap)
                    raise ServingError(
                        "INVALID_ARGUMENT", f'Serving signature name: "{key}" not found in signature def'
                    )
                inputs, request_format = json_tensors.predict_inputs(document, signature.inputs)
                outputs = await self._wait(self.predictor.predict(servable, signature_name, inputs))
                response = json_tensors.predict_response(outputs, request_format)
            else:
                examples = serialized_examples(*json_tensors.examples_from_json(document))
                if verb == "classify":
                    result = await self._wait(self.predictor.classify(servable, signature_name, examples))
                    response = json_tensors.classify_response(result)
                else:
                    result = await self._wait(self.predictor.regress(servable, signature_name, examples))
                    response = json_tensors.regress_response(result)
        except ServingError as error:
            code = error.code
            return _error(error)
        except Exception as error:  # a bug: answer 500 in TF Serving's shape and keep serving
            log.exception("request failed")
            code = "INTERNAL"
            return _error(ServingError(code, f"{type(error).__name__}: {error}"))
        finally:
            self.metrics.request_count.labels(address.name, code).inc()
        self.metrics.request_latency.labels(address.name, verb, "REST").observe((time.perf_counter() - started) * 1e6)
        return _json(response)

    async def _wait(self, future: Future):  # type: ignore[no-untyped-def]
        try:
            return await asyncio.wait_for(asyncio.wrap_future(future), self.timeout)
        except TimeoutError:
            raise ServingError("DEADLINE_EXCEEDED", "Deadline Exceeded") from None
