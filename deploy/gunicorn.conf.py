"""gunicorn settings for the gateway in production.

    IMGCLF_DATABASE_URL=postgresql+psycopg://... IMGCLF_REDIS_URL=redis://... \
    IMGCLF_REGISTRY=/models IMGCLF_BACKEND=grpc://model-server:8500 \
    gunicorn -c deploy/gunicorn.conf.py

Uvicorn workers run the app factory ``imgclf.gateway.app:create_app()``, each building its own
database pool, backend and prediction log from the ``IMGCLF_*`` settings (so ``preload_app`` is
off: TensorFlow must not be forked). With several workers, set ``IMGCLF_REDIS_URL`` so rate
limits are shared, and prefer a remote model backend (one model server instead of a model copy per
worker). Metrics from every worker are aggregated through ``PROMETHEUS_MULTIPROC_DIR``.
SIGTERM: workers stop accepting, finish in-flight requests within ``graceful_timeout``, exit.
"""

import os
import shutil
import tempfile

bind = os.environ.get("IMGCLF_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("IMGCLF_WORKERS", "2"))
worker_class = "imgclf.gateway.worker.GatewayWorker"  # uvicorn's, with the request-head limit
wsgi_app = "imgclf.gateway.app:create_app()"
preload_app = False
graceful_timeout = int(os.environ.get("IMGCLF_SHUTDOWN_GRACE_SECONDS", "30"))
timeout = 120  # a worker silent this long is restarted (model loading included)
keepalive = 5
accesslog = None  # the app writes JSON access lines with request ids


def on_starting(server):  # noqa: ANN001, ANN201
    """One fresh directory for the workers' metric files (created if not given)."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory is None:
        directory = tempfile.mkdtemp(prefix="imgclf-prometheus-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    shutil.rmtree(directory, ignore_errors=True)
    os.makedirs(directory, exist_ok=True)


def post_worker_init(worker):  # noqa: ANN001, ANN201
    from imgclf.logs import configure_json_logging

    configure_json_logging(os.environ.get("IMGCLF_LOG_LEVEL", "info"))


def child_exit(server, worker):  # noqa: ANN001, ANN201
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
