"""Monitoring: the drift verdict of each version with recent traffic and its distributions beside the
reference (the figures of ``imgclf monitor drift --html``), the quality trend (estimated, realized
and audited accuracy) and request rate and latency.

The page itself only lists the versions; each section is a fragment the page loads with htmx
(linked for browsers without scripts). Their figures come from ``imgclf.monitoring.jobs`` over the
prediction log and are kept for ``CACHE_SECONDS``, so a reload costs nothing and a drift check (an
MMD permutation test) runs at most once a minute per version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import numpy as np
from fastapi import APIRouter, Depends, Path, Request
from starlette.responses import Response

from imgclf.errors import MonitoringError
from imgclf.gateway.console.base import ConsoleRoute, ConsoleUser, console_of, gateway_of, render, require, signed_in
from imgclf.gateway.errors import ApiError
from imgclf.monitoring.drift import DriftThresholds
from imgclf.monitoring.jobs import ProfileCache, drift_check, now_minus, quality_over_time
from imgclf.monitoring.report import distribution_figures
from imgclf.storage.monitoring import traffic_rows, versions_with_traffic
from imgclf.storage.predictions import as_utc

router = APIRouter(prefix="/ui", include_in_schema=False, route_class=ConsoleRoute)

CACHE_SECONDS = 60.0
QUALITY_DAYS = 7
TRAFFIC_HOURS = 24
T = TypeVar("T")


class TimedCache:
    """Values computed at most once per ``seconds`` per key; concurrent requests for a key wait for one computation."""

    def __init__(self, seconds: float = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self._values: dict[Any, tuple[float, Any]] = {}
        self._locks: dict[Any, threading.Lock] = {}
        self._guard = threading.Lock()

    def get(self, key: Any, compute: Callable[[], T]) -> T:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            found = self._values.get(key)
            if found is not None and time.monotonic() - found[0] < self.seconds:
                return found[1]
            value = compute()
            self._values[key] = (time.monotonic(), value)
            return value


def _cache(request: Request) -> TimedCache:
    caches = console_of(request).caches
    if "monitoring" not in caches:
        caches["monitoring"] = TimedCache()
        caches["profiles"] = ProfileCache(gateway_of(request).settings.registry)
    return caches["monitoring"]


def _lookback(request: Request) -> datetime:
    return now_minus(timedelta(hours=gateway_of(request).settings.drift_lookback_hours))


@router.get("/monitoring")
async def monitoring_page(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    require(user, "review")
    gateway = gateway_of(request)
    gateway.require_database()
    model = gateway.backend.model_name
    since = _lookback(request)
    traffic = await gateway.run_blocking(
        _cache(request).get, ("versions", model), lambda: versions_with_traffic(gateway.engine, model, since)
    )
    context = {"model": model, "versions": sorted(traffic.items(), reverse=True),
               "lookback": gateway.settings.drift_lookback_hours}  # fmt: skip
    return render(request, "monitoring.html", context, user=user)


def _drift(request: Request, version: int) -> dict[str, Any]:
    gateway = gateway_of(request)
    model = gateway.backend.model_name
    since = _lookback(request)
    cache = _cache(request)
    profiles = console_of(request).caches["profiles"]

    def check() -> dict[str, Any]:
        try:
            report, profile, window = drift_check(
                gateway.engine, profiles, model, version, since, gateway.settings.drift_window,
                DriftThresholds.from_settings(gateway.settings),
            )  # fmt: skip
        except MonitoringError as error:
            return {"error": str(error)}
        return {"report": report, "profile": profile, "window": window, "checked": datetime.now(UTC)}

    return cache.get(("drift", model, version), check)


@router.get("/monitoring/drift/{version}")
async def drift_fragment(
    request: Request,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    user: Annotated[ConsoleUser, Depends(signed_in)],
) -> Response:
    require(user, "review")
    gateway = gateway_of(request)
    gateway.require_database()
    found = await gateway.run_blocking(_drift, request, version)
    return render(request, "monitoring_drift.html", {"version": version, **found}, user=user)


@router.get("/monitoring/drift/{version}/figure-{index}.png")
async def drift_figure(
    request: Request,
    version: Annotated[int, Path(ge=1, le=2**31 - 1)],
    index: Annotated[int, Path(ge=0, le=9)],
    user: Annotated[ConsoleUser, Depends(signed_in)],
) -> Response:
    require(user, "review")
    gateway = gateway_of(request)
    found = await gateway.run_blocking(_drift, request, version)
    if "report" not in found:
        raise ApiError(404, "not_found", "no drift report for this version")
    key = ("figures", gateway.backend.model_name, version, found["checked"])
    figures = await gateway.run_blocking(
        _cache(request).get, key, lambda: distribution_figures(found["profile"], found["window"])
    )
    if index >= len(figures):
        raise ApiError(404, "not_found", "no such figure")
    headers = {"Cache-Control": "private, max-age=60", "X-Content-Type-Options": "nosniff"}
    return Response(figures[index][1], media_type="image/png", headers=headers)


def line_chart(labels: list[str], series: dict[str, list[float | None]], low: float, high: float) -> dict[str, Any]:
    """Polylines for an inline SVG (no script, no style): x by bucket, y from ``low`` to ``high``."""
    width, height, left, bottom, top = 640, 220, 48, 28, 10
    span = max(high - low, 1e-9)
    step = (width - left - 10) / max(len(labels) - 1, 1)

    def y(value: float) -> float:
        return round(top + (height - top - bottom) * (1 - (min(max(value, low), high) - low) / span), 1)

    lines = {}
    for name, values in series.items():
        points = [(round(left + i * step, 1), y(v)) for i, v in enumerate(values) if v is not None]
        lines[name] = " ".join(f"{px},{py}" for px, py in points)
    ticks = [(round(low + span * f, 3), y(low + span * f)) for f in (0, 0.25, 0.5, 0.75, 1)]
    every = max(1, len(labels) // 6)
    xlabels = [(round(left + i * step, 1), label) for i, label in enumerate(labels) if i % every == 0]
    return {"width": width, "height": height, "left": left, "bottom": height - bottom, "lines": lines,
            "ticks": ticks, "xlabels": xlabels}  # fmt: skip


def _quality(request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    model = gateway.backend.model_name
    cache = _cache(request)
    profiles = console_of(request).caches["profiles"]

    def compute() -> dict[str, Any]:
        since = now_minus(timedelta(days=QUALITY_DAYS))
        points = quality_over_time(gateway.engine, profiles, model, since, timedelta(days=1))
        newest = max((p.model_version for p in points), default=None)
        mine = [p for p in points if p.model_version == newest]
        labels = [p.bucket_start[:10] for p in mine]
        series = {
            "estimated": [p.quality.estimated_accuracy for p in mine],
            "realized": [p.quality.realized_accuracy for p in mine],
            "audited": [p.quality.audited_accuracy for p in mine],
        }
        return {"points": points, "newest": newest, "chart": line_chart(labels, series, 0.0, 1.0) if mine else None}

    return cache.get(("quality", model), compute)


@router.get("/monitoring/quality")
async def quality_fragment(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    require(user, "review")
    gateway = gateway_of(request)
    gateway.require_database()
    found = await gateway.run_blocking(_quality, request)
    return render(request, "monitoring_quality.html", {"days": QUALITY_DAYS, **found}, user=user)


def hourly_traffic(rows: list[tuple[datetime, str, float]], now: datetime, hours: int) -> list[dict[str, Any]]:
    """Requests, images and request latency percentiles per hour (the last ``hours``, oldest first)."""
    start = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=hours - 1)
    buckets: list[dict[str, float]] = [{} for _ in range(hours)]  # request id → its latency
    images = [0] * hours
    for created, request_id, latency in rows:
        slot = int((as_utc(created) - start).total_seconds() // 3600)
        if 0 <= slot < hours:
            buckets[slot][request_id] = latency
            images[slot] += 1
    table = []
    for slot, requests in enumerate(buckets):
        latencies = np.fromiter(requests.values(), float, len(requests))
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99]) if len(latencies) else (None, None, None)
        table.append({"hour": (start + timedelta(hours=slot)).strftime("%m-%d %H:00"), "requests": len(requests),
                      "images": images[slot], "p50": p50, "p95": p95, "p99": p99})  # fmt: skip
    return table


def _traffic(request: Request) -> dict[str, Any]:
    gateway = gateway_of(request)
    model = gateway.backend.model_name

    def compute() -> dict[str, Any]:
        now = datetime.now(UTC)
        rows = traffic_rows(gateway.engine, model, now - timedelta(hours=TRAFFIC_HOURS))
        table = hourly_traffic(rows, now, TRAFFIC_HOURS)
        labels = [row["hour"][6:] for row in table]
        most = max([row["p99"] or 0 for row in table] + [1.0])
        latency = line_chart(labels, {k: [row[k] for row in table] for k in ("p50", "p95", "p99")}, 0.0, most)
        busiest = max([row["requests"] for row in table] + [1])
        rate = line_chart(labels, {"requests": [float(row["requests"]) for row in table]}, 0.0, float(busiest))
        return {"table": table, "latency": latency, "rate": rate}

    return _cache(request).get(("traffic", model), compute)


@router.get("/monitoring/traffic")
async def traffic_fragment(request: Request, user: Annotated[ConsoleUser, Depends(signed_in)]) -> Response:
    require(user, "review")
    gateway = gateway_of(request)
    gateway.require_database()
    found = await gateway.run_blocking(_traffic, request)
    return render(request, "monitoring_traffic.html", {"hours": TRAFFIC_HOURS, **found}, user=user)
