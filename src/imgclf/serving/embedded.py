"""The model server's engine embedded in another process, without ports: the public serving API.

``EmbeddedServer`` loads a model's versions from a registry directory, keeps them current
(polling, ``apply_config`` with a TF Serving ``ModelServerConfig``), says which versions are
AVAILABLE and classifies batches through the same batching engine, version manager and signature
checks as ``imgclf serve``. The gateway's local backend is built on it; nothing outside
``imgclf.serving`` needs the manager, the predictor or the batch scheduler.

Example:
    >>> server = EmbeddedServer(Path("registry/cats_dogs"), "cats_dogs")
    >>> version, outputs = server.run({"image_bytes": np.array([jpeg], dtype=object)}, outputs=("scores",))
    >>> server.available_versions()
    {3}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tensorflow_serving.config import model_server_config_pb2

from imgclf.contract import SERVING_SIGNATURE
from imgclf.errors import ServingError
from imgclf.serving.metrics import ServingMetrics
from imgclf.serving.options import EMBEDDED_BATCHING, BatchingParameters, ServerOptions
from imgclf.serving.predictor import ModelAddress, build_predictor

Tensors = dict[str, np.ndarray]


class EmbeddedServer:
    def __init__(self, base_path: Path, model_name: str, batching: BatchingParameters | None = None) -> None:
        self.model_name = model_name
        options = ServerOptions(
            model_name=model_name,
            model_base_path=Path(base_path),
            enable_batching=True,
            batching_parameters=batching or EMBEDDED_BATCHING,
        )
        self.metrics = ServingMetrics()  # the model server's own series (TF Serving's names)
        self._predictor = build_predictor(options, self.metrics)
        self._predictor.manager.poll_once()

    def start_polling(self, interval_seconds: float) -> None:
        """Look for new, changed or removed version directories every ``interval_seconds``."""
        self._predictor.manager.start_polling(interval_seconds)

    def apply_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Load, unload and label versions as a TF Serving model config says (``ServingError`` if refused)."""
        self._predictor.manager.reload_config(config)

    def available_versions(self) -> set[int]:
        try:
            statuses = self._predictor.manager.status(self.model_name)
        except ServingError:
            return set()
        return {s.version for s in statuses if s.state == "AVAILABLE"}

    def ready(self) -> bool:
        """Every configured model has an AVAILABLE version."""
        return self._predictor.manager.is_ready()

    def signature_outputs(self, version: int | None = None, label: str | None = None) -> set[str]:
        """The output names of ``serving_default`` of the version a request would reach."""
        servable = self._predictor.servable(ModelAddress(self.model_name, version, label))
        return set(servable.signature(SERVING_SIGNATURE).outputs)

    def run(
        self,
        inputs: Tensors,
        version: int | None = None,
        label: str | None = None,
        outputs: tuple[str, ...] = (),
        timeout: float = 30,
        background: bool = False,
    ) -> tuple[int, Tensors]:
        """``serving_default`` on ``inputs`` → (the version that answered, its outputs; ``outputs`` only,
        when given and present in the signature). ``background`` runs in the calling thread, outside the
        batching queue, so answered requests never wait behind it (shadow copies)."""
        servable = self._predictor.servable(ModelAddress(self.model_name, version, label))
        available = servable.signature(SERVING_SIGNATURE).outputs
        wanted = tuple(name for name in outputs if name in available)
        if background:
            answer = servable.run(SERVING_SIGNATURE, inputs)
            return servable.version, {k: v for k, v in answer.items() if not wanted or k in wanted}
        future = self._predictor.predict(servable, SERVING_SIGNATURE, inputs, wanted)
        try:
            return servable.version, future.result(timeout=timeout)
        except TimeoutError:
            raise ServingError("DEADLINE_EXCEEDED", f"no answer within {timeout} s") from None

    def close(self) -> None:
        self._predictor.close()
