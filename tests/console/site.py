"""A console to test against: a gateway on loopback with a fake model (no TensorFlow), a registry of
two small fake exports (whole, by their manifests) with a reference profile, and seeded predictions
whose images are in the image store."""

from __future__ import annotations

import contextlib
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

from imgclf.contract import write_manifest
from imgclf.gateway.backends import BackendAnswer
from imgclf.monitoring.input_stats import STATISTICS
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.window import Window
from imgclf.storage.models import new_id
from imgclf.storage.predictions import insert_predictions
from tests.gateway.conftest import RunningGateway, gateway_settings, running_gateway

MODEL = "pets"
CLASSES = ["cat", "dog", "fox"]


class ConsoleBackend:
    """Answers every image with the next scores of a fixed cycle, as version 7 (stable) of ``pets``."""

    model_name = MODEL

    def __init__(self) -> None:
        self.cycle = np.array([[0.55, 0.35, 0.10], [0.92, 0.05, 0.03], [0.20, 0.70, 0.10]], np.float32)
        self.calls = 0

    def classify(self, images, version=None, label=None, background=False):  # type: ignore[no-untyped-def]
        rows = np.stack([self.cycle[(self.calls + i) % len(self.cycle)] for i in range(len(images))])
        self.calls += 1
        return BackendAnswer(MODEL, 7, rows, rows.argmax(axis=1).astype(np.int64))

    def is_available(self, version: int) -> bool:
        return version in (7, 8)

    def ready(self) -> bool:
        return True

    def close(self) -> None:
        pass


def picture(seed: int, size: tuple[int, int] = (96, 72), fmt: str = "JPEG") -> bytes:
    """A small picture (smooth colour gradients, so thumbnails and screenshots show something)."""
    rng = np.random.default_rng(seed)
    w, h = size
    x, y = np.meshgrid(np.linspace(0, 1, w), np.linspace(0, 1, h))
    base = rng.uniform(0, 255, 3)
    pixels = np.stack([base[c] * (0.5 + 0.5 * np.sin(3 * x + c + seed) * y) for c in range(3)], axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def statistics(rng: np.random.Generator, shift: float = 0.0) -> dict[str, float]:
    return {name: float(rng.normal(0.5 + shift, 0.1)) for name in STATISTICS}


def fake_version(registry: Path, version: int, accuracy: float, blessed: bool | None, profile: bool = True) -> None:
    """A version directory that passes the registry's whole-export check, with a card, gate result and profile."""
    directory = registry / MODEL / str(version)
    (directory / "assets.extra").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(f"fake export {version}".encode())
    created = (datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=version)).isoformat()
    card = {"classes": CLASSES, "decision": {"threshold": None}, "created_at": created,
            "metrics": {"accuracy": accuracy, "macro_f1": accuracy - 0.02, "ece": 0.04}}  # fmt: skip
    (directory / "assets.extra" / "model_card.json").write_text(json.dumps(card))
    if profile:
        rng = np.random.default_rng(version)
        rows = []
        for i in range(300):
            top = float(rng.uniform(0.4, 1.0))
            rows.append({"label": CLASSES[i % 3], "confidence": top, "image_format": "JPEG",
                         "input_stats": statistics(rng), "embedding": rng.normal(0, 1, 8).tolist()})  # fmt: skip
        window = Window.from_records(rows, CLASSES)
        truth = np.where(rng.uniform(size=300) < 0.85, window.class_ids, (window.class_ids + 1) % 3)
        ReferenceProfile.build(window, truth, "synthetic reference", {"dim": 8}).save(directory)
    write_manifest(directory)
    if blessed is not None:
        checks = [{"metric": "accuracy", "passed": blessed, "message": f"accuracy {accuracy} >= 0.5"}]
        gate = {"blessed": blessed, "checks": checks, "candidate_metrics": {"accuracy": accuracy}}
        (directory / "assets.extra" / "gate_result.json").write_text(json.dumps(gate))


def fake_registry(root: Path) -> Path:
    registry = root / "registry"
    fake_version(registry, 7, 0.86, None)
    fake_version(registry, 8, 0.89, True)
    first = {"version": 7, "at": "2026-11-08T00:00:00+00:00", "reason": "export"}
    state = {"labels": {"stable": 7}, "history": [first]}
    (registry / MODEL / "registry.json").write_text(json.dumps(state))
    return registry


def seed_predictions(
    running: RunningGateway, count: int, seed: int = 0, images: int = 24, photos: list[bytes] | None = None
) -> list[str]:
    """``count`` predictions of version 7 over the last day, a third of them queued for review, with
    ``images`` distinct pictures (or the JPEG ``photos`` given) put in the image store."""
    rng = np.random.default_rng(seed)
    store = running.gateway.service.store
    stored = []
    for data in photos or [picture(seed * 1000 + i) for i in range(images)]:
        with Image.open(io.BytesIO(data)) as opened:
            stored.append((store.put(data), *opened.size, len(data)))
    now = datetime.now(UTC)
    rows, ids = [], []
    for i in range(count):
        scores = rng.dirichlet([2, 1, 1])
        order = np.argsort(-scores)
        top = float(scores[order[0]])
        queued = i % 3 == 0
        reason = ("uncertain", "audit", "out_of_distribution")[i % 9 // 3] if queued else None
        prediction_id = new_id()
        ids.append(prediction_id)
        rows.append({
            "id": prediction_id, "created_at": now - timedelta(seconds=int(rng.integers(0, 86_000))),
            "request_id": f"seed-{i}", "api_key_id": None, "image_sha256": stored[i % len(stored)][0],
            "image_bytes": stored[i % len(stored)][3], "image_format": "JPEG", "width": stored[i % len(stored)][1],
            "height": stored[i % len(stored)][2], "model_name": MODEL,
            "model_version": 7, "label": CLASSES[order[0]], "confidence": top,
            "scores": {c: float(s) for c, s in zip(CLASSES, scores, strict=True)}, "threshold": None,
            "latency_ms": float(rng.gamma(4, 3)), "needs_review": queued, "input_stats": statistics(rng),
            "embedding": rng.normal(0, 1, 8).round(5).tolist(), "ood_score": float(rng.uniform(0.2, 1.6)),
            "out_of_distribution": False, "review_reason": reason, "role": "stable",
        })  # fmt: skip
    insert_predictions(running.gateway.engine, rows, skip_existing=False)
    return ids


@dataclass
class Browserless:
    """A person using the console through httpx (cookies kept), for tests without a browser."""

    client: httpx.Client

    def csrf(self, path: str = "/ui/review") -> str:
        page = self.client.get(path)
        return re.search(r'name="csrf-token" content="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]

    def sign_in(self, key: str) -> httpx.Response:
        form = self.client.get("/ui/sign-in")
        token = re.search(r'name="csrf_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        return self.client.post("/ui/sign-in", data={"csrf_token": token, "api_key": key, "next": "/ui/"})


@contextlib.contextmanager
def console_site(root: Path, database_url: str, **overrides) -> Iterator[RunningGateway]:  # type: ignore[no-untyped-def]
    registry = fake_registry(root)
    settings = gateway_settings(
        root, registry, database_url, model_name=MODEL, drift_interval_seconds=0, review_audit_rate=0.0, **overrides
    )
    with running_gateway(settings, backend=ConsoleBackend()) as running:  # type: ignore[arg-type]
        yield running


def person(running: RunningGateway) -> Browserless:
    return Browserless(httpx.Client(base_url=running.url, timeout=30, follow_redirects=False))
