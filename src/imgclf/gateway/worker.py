"""The gunicorn worker class for the gateway: uvicorn's worker with the bounded request head.

``deploy/gunicorn.conf.py`` names it (``worker_class = "imgclf.gateway.worker.GatewayWorker"``);
the limit comes from ``IMGCLF_MAX_HEADER_BYTES`` like every other setting.
"""

from __future__ import annotations

from uvicorn_worker import UvicornWorker

from imgclf.config import GatewaySettings
from imgclf.gateway.http_limits import bounded_http_protocol


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS = {**UvicornWorker.CONFIG_KWARGS, "http": bounded_http_protocol(GatewaySettings().max_header_bytes)}
