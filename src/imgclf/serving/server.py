"""``ModelServer``: the manager, batching, REST (uvicorn) and gRPC running together.

Start-up loads every configured model once before the ports answer requests (readiness tells
when a model has no AVAILABLE version), then polls for new versions in the background. SIGTERM or
SIGINT stops accepting connections, lets in-flight REST and gRPC requests finish (up to
``shutdown_grace_seconds``), runs what is still queued for batching, and exits.

Example:
    >>> server = ModelServer(ServerOptions(model_name="cats_dogs", model_base_path=Path("registry/cats_dogs")))
    >>> server.start()
    >>> server.serve()   # blocks until SIGTERM
"""

from __future__ import annotations

import logging
import socket
import threading

import tensorflow as tf
import uvicorn

from imgclf.serving.grpc_api import build_grpc_server, set_health
from imgclf.serving.metrics import ServingMetrics
from imgclf.serving.options import ServerOptions, parse_model_config, read_text
from imgclf.serving.predictor import build_predictor
from imgclf.serving.rest import RestApi
from imgclf.uvicorn_server import DrainingServer

log = logging.getLogger(__name__)


def configure_tensorflow_threads(intra_op: int, inter_op: int) -> None:
    """0 leaves TensorFlow's choice (all cores). Must run before TensorFlow executes anything."""
    try:
        if intra_op:
            tf.config.threading.set_intra_op_parallelism_threads(intra_op)
        if inter_op:
            tf.config.threading.set_inter_op_parallelism_threads(inter_op)
    except RuntimeError as error:
        log.warning("TensorFlow threads already configured: %s", error)


class ModelServer:
    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        configure_tensorflow_threads(options.tensorflow_intra_op_parallelism, options.tensorflow_inter_op_parallelism)
        self.metrics = ServingMetrics()
        self.predictor = build_predictor(options, self.metrics)
        self.manager = self.predictor.manager
        self.rest = RestApi(self.predictor, options.rest_api_timeout_in_ms / 1000)
        self.grpc, self.health, self.grpc_port = build_grpc_server(
            self.predictor, self.manager.reload_config, options.grpc_port, options.host, options.grpc_max_threads
        )
        self._socket = socket.create_server((options.host, options.rest_api_port), reuse_port=False)
        self.rest_port = self._socket.getsockname()[1]
        config = uvicorn.Config(
            self.rest.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=None
        )
        self.http = DrainingServer(config, self.begin_shutdown)
        self._stopping = threading.Event()
        self._grpc_stopped: threading.Event | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """Load the configured models, start polling, open the gRPC port (REST opens in ``serve``)."""
        self.manager.poll_once()
        self.manager.start_polling(self.options.file_system_poll_wait_seconds)
        set_health(self.health, self.manager.is_ready())
        self.grpc.start()
        self._spawn(self._watch_health, "imgclf-health")
        if self.options.model_config_file and self.options.model_config_file_poll_wait_seconds > 0:
            self._spawn(self._watch_config_file, "imgclf-config-poll")
        log.info(
            "serving gRPC on %s:%d, REST on %s:%d", self.options.host, self.grpc_port, self.options.host, self.rest_port
        )

    def serve(self) -> None:
        """Serve REST until a shutdown signal (or ``begin_shutdown``), then drain and stop everything."""
        try:
            self.http.run(sockets=[self._socket])
        finally:
            self.begin_shutdown()
            self._finish_shutdown()

    def begin_shutdown(self) -> None:
        """Stop accepting new work: gRPC starts its grace period, REST stops (idempotent)."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        log.info("shutting down: draining in-flight requests")
        set_health(self.health, False)
        self._grpc_stopped = self.grpc.stop(self.options.shutdown_grace_seconds)
        self.http.should_exit = True

    def _finish_shutdown(self) -> None:
        log.debug("REST stopped")
        if self._grpc_stopped is not None:
            self._grpc_stopped.wait(self.options.shutdown_grace_seconds + 1)
        log.debug("gRPC stopped")
        self.predictor.close(self.options.shutdown_grace_seconds)
        log.debug("batching stopped")
        for thread in self._threads:
            thread.join(timeout=5)
        log.info("stopped")

    # ------------------------------------------------------------ background threads

    def _spawn(self, target, name: str) -> None:  # type: ignore[no-untyped-def]
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _watch_health(self) -> None:
        while not self._stopping.wait(0.5):
            set_health(self.health, self.manager.is_ready())

    def _watch_config_file(self) -> None:
        path = self.options.model_config_file
        assert path is not None
        applied, refused = read_text(path), None
        while not self._stopping.wait(self.options.model_config_file_poll_wait_seconds):
            text = None
            try:
                text = read_text(path)
                if text == applied:
                    continue
                self.manager.reload_config(parse_model_config(text, str(path)))
                applied, refused = text, None
                log.info("reloaded model config from %s", path)
            except Exception as error:  # keep the running labels; try the same file again next time
                if text != refused:  # (a labelled version may load later) but say why only once
                    log.error("model config %s not applied: %s", path, error)
                refused = text
