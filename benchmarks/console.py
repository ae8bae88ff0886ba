"""The web console under load (issue 22): page render times with 100,000 predictions in PostgreSQL,
time per keyboard review decision in a real browser (key press to database row), and whether the
console costs ``/v1/predict`` anything.

A gateway on loopback (uvicorn in this process, the console tests' fake model: no TensorFlow) on a
fresh PostgreSQL database holding ``--predictions`` rows over the last 7 days (a fifth queued for
review, a tenth reviewed, 48 pictures in the image store). Each page is requested ``--repeats``
times one after another by a signed-in admin (httpx, whole response read); figures are client
wall times. The monitoring fragments (drift, quality, traffic) are cached for 60 s by the console:
their first (cold) request is reported apart. Keyboard decisions: headless Chromium (make
browser) presses digit keys on the review page ``--decisions`` times; each is timed from the key
press until the decision's row shows its label in PostgreSQL. ``/v1/predict``: the same app with the
console on and off, ``--predict-rounds`` interleaved rounds of 200 requests each (one client, the
fake model), median p50.

    .venv/bin/python benchmarks/console.py [--database-url postgresql+psycopg://...] [--predictions 100000]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def percentiles(times: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "max_ms": float(max(times)), "n": len(times)}  # fmt: skip


def seed(running, count: int, rng: np.random.Generator) -> None:  # type: ignore[no-untyped-def]
    from imgclf.monitoring.input_stats import STATISTICS
    from imgclf.storage.models import new_id
    from imgclf.storage.predictions import insert_predictions
    from tests.console.site import CLASSES, MODEL, picture

    store = running.gateway.service.store
    digests = [store.put(picture(i)) for i in range(48)]
    now = datetime.now(UTC)
    batch = []
    for i in range(count):
        scores = rng.dirichlet([3, 1.5, 1])
        order = np.argsort(-scores)
        queued = rng.uniform() < 0.2
        reviewed = queued and rng.uniform() < 0.5
        request = f"bench-{i // 2}"  # two images per request
        batch.append({
            "id": new_id(), "created_at": now - timedelta(seconds=float(rng.uniform(0, 7 * 86400))),
            "request_id": request, "api_key_id": None, "image_sha256": digests[i % len(digests)], "image_bytes": 3000,
            "image_format": "JPEG", "width": 96, "height": 72, "model_name": MODEL, "model_version": 7,
            "label": CLASSES[order[0]], "confidence": float(scores[order[0]]),
            "scores": {c: round(float(s), 5) for c, s in zip(CLASSES, scores, strict=True)}, "threshold": None,
            "latency_ms": float(rng.gamma(4, 3)), "needs_review": bool(queued),
            "input_stats": {name: round(float(rng.normal(0.5, 0.1)), 4) for name in STATISTICS},
            "embedding": rng.normal(0, 1, 8).round(5).tolist(), "ood_score": float(rng.uniform(0.2, 1.6)),
            "out_of_distribution": False,
            "review_reason": ("uncertain", "audit", "out_of_distribution")[i % 3] if queued else None,
            "review_label": CLASSES[order[int(rng.uniform() < 0.2)]] if reviewed else None,
            "reviewer": "bench" if reviewed else None, "reviewed_at": now if reviewed else None, "role": "stable",
        })  # fmt: skip
        if len(batch) == 5000:
            insert_predictions(running.gateway.engine, batch, skip_existing=False)
            batch = []
    if batch:
        insert_predictions(running.gateway.engine, batch, skip_existing=False)


def time_pages(person, pages: dict[str, str], repeats: int) -> dict[str, dict[str, float]]:  # type: ignore[no-untyped-def]
    results = {}
    for name, path in pages.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            response = person.client.get(path)
            times.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code, response.text[-300:])
        results[name] = percentiles(times)
        print(f"  {name:<28} p50 {results[name]['p50_ms']:7.1f} ms  p95 {results[name]['p95_ms']:7.1f} ms", flush=True)
    return results


def time_keyboard(running, decisions: int) -> dict[str, float] | None:  # type: ignore[no-untyped-def]
    from sqlalchemy import text

    from tests.console.browser import find_browser, start_browser

    if find_browser() is None:
        print("  no chromium (make browser): keyboard decisions not measured")
        return None
    driver = start_browser()
    try:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import WebDriverWait

        driver.get(running.url + "/ui/sign-in")
        driver.find_element(By.ID, "api_key").send_keys(running.key("review", name="bench-keyboard"))
        driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
        WebDriverWait(driver, 30).until(lambda d: d.current_url.endswith("/ui/review"))
        card = "return document.getElementById('card-title').dataset.prediction"
        query = text("SELECT review_label FROM predictions WHERE id = :id")
        times = []
        with running.gateway.engine.connect() as connection:
            for step in range(decisions):
                item = driver.execute_script(card)
                started = time.perf_counter()
                ActionChains(driver).send_keys(str(1 + step % 3)).perform()
                while connection.execute(query, {"id": item}).scalar() is None:
                    connection.rollback()  # a fresh snapshot each poll
                times.append((time.perf_counter() - started) * 1000)
                connection.rollback()
                WebDriverWait(driver, 10, poll_frequency=0.005).until(
                    lambda d, item=item: d.execute_script(card) != item
                )
        return percentiles(times)
    finally:
        driver.quit()


def time_predict(settings_for, rounds: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """p50 of POST /v1/predict, console on vs off, interleaved rounds (medians of the rounds' p50)."""
    from tests.console.site import ConsoleBackend, picture
    from tests.gateway.conftest import running_gateway

    body = [("files", ("a.jpg", picture(5), "image/jpeg"))]
    p50 = {True: [], False: []}  # type: ignore[var-annotated]
    for _ in range(rounds):
        for enabled in (True, False):
            with running_gateway(settings_for(enabled), backend=ConsoleBackend()) as running:  # type: ignore[arg-type]
                headers = {"Authorization": f"Bearer {running.key('predict')}"}
                for _ in range(20):  # warm-up
                    running.client.post("/v1/predict", files=body, headers=headers)
                times = []
                for _ in range(200):
                    started = time.perf_counter()
                    assert running.client.post("/v1/predict", files=body, headers=headers).status_code == 200
                    times.append((time.perf_counter() - started) * 1000)
                p50[enabled].append(float(np.percentile(times, 50)))
    on, off = statistics.median(p50[True]), statistics.median(p50[False])
    return {"console_on_p50_ms": on, "console_off_p50_ms": off, "ratio": on / off, "rounds": rounds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL (SQLAlchemy URL); default: a fresh database on 127.0.0.1")
    parser.add_argument("--predictions", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--decisions", type=int, default=60)
    parser.add_argument("--predict-rounds", type=int, default=4)
    parser.add_argument("--json", type=Path, help="Write the figures here.")
    args = parser.parse_args()

    import psycopg

    from tests.console.site import ConsoleBackend, fake_registry, person
    from tests.gateway.conftest import gateway_settings, running_gateway

    created = None
    url = args.database_url
    if url is None:
        created = f"imgclf_bench_console_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{created}"')
        url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{created}"
    results: dict[str, object] = {"predictions": args.predictions}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            registry = fake_registry(root)

            def settings_for(console: bool, database: str = url):  # type: ignore[no-untyped-def]
                return gateway_settings(
                    root, registry, database, model_name="pets", drift_interval_seconds=0, review_audit_rate=0.0,
                    auth_cache_seconds=30, console_enabled=console, rate_limit_per_minute=1e9, rate_limit_burst=10**6,
                )  # fmt: skip

            with running_gateway(settings_for(True), backend=ConsoleBackend()) as running:  # type: ignore[arg-type]
                started = time.perf_counter()
                seed(running, args.predictions, np.random.default_rng(0))
                with running.gateway.engine.begin() as connection:
                    connection.exec_driver_sql("ANALYZE predictions")
                print(f"seeded {args.predictions} predictions in {time.perf_counter() - started:.0f} s", flush=True)
                admin = person(running)
                admin.sign_in(running.key("admin", name="bench"))
                first = admin.client.get("/ui/predictions")
                cursor = re.search(r'href="([^"]+)" rel="next"', first.text)[1].replace("&amp;", "&")  # type: ignore[index]
                one = re.search(r'data-row="([0-9a-f]+)"', first.text)[1]  # type: ignore[index]
                cold = {}
                for name in ("drift", "quality", "traffic"):
                    path = "/ui/monitoring/drift/7" if name == "drift" else f"/ui/monitoring/{name}"
                    began = time.perf_counter()
                    assert admin.client.get(path).status_code == 200
                    cold[f"monitoring {name} (cold)"] = (time.perf_counter() - began) * 1000
                print("cold monitoring fragments (ms):", {k: round(v) for k, v in cold.items()}, flush=True)
                pages = {
                    "review": "/ui/review",
                    "review grid": "/ui/review/grid",
                    "review, reason audit": "/ui/review?reason=audit",
                    "predictions": "/ui/predictions",
                    "predictions, filtered": "/ui/predictions?label=dog&min_confidence=0.4&max_confidence=0.6"
                    "&review_status=pending",
                    "predictions, next page": cursor,
                    "prediction detail": f"/ui/predictions/{one}",
                    "classify": "/ui/classify",
                    "models": "/ui/models",
                    "monitoring": "/ui/monitoring",
                    "monitoring drift (cached)": "/ui/monitoring/drift/7",
                    "monitoring quality (cached)": "/ui/monitoring/quality",
                    "monitoring traffic (cached)": "/ui/monitoring/traffic",
                }
                print("pages:", flush=True)
                results["pages"] = time_pages(admin, pages, args.repeats)
                results["cold"] = cold
                # A decision through the page's own request (what htmx sends), server and network only.
                page = admin.client.get("/ui/review").text
                csrf = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]  # type: ignore[index]
                times = []
                for _ in range(args.repeats):
                    item = re.search(r'data-prediction="([0-9a-f]+)"', page)[1]  # type: ignore[index]
                    trail = re.search(r'name="trail" value="([^"]*)"', page)[1]  # type: ignore[index]
                    began = time.perf_counter()
                    answer = admin.client.post(f"/ui/review/{item}/label", headers={"HX-Request": "true"},
                                               data={"csrf_token": csrf, "trail": trail, "label": "cat"})  # fmt: skip
                    times.append((time.perf_counter() - began) * 1000)
                    assert answer.status_code == 200, answer.text[-300:]
                    page = answer.text
                results["decision request"] = percentiles(times)
                print(f"  {'decision request (htmx)':<28} p95 {results['decision request']['p95_ms']:7.1f} ms")
                print("keyboard decisions in the browser:", flush=True)
                results["keyboard"] = time_keyboard(running, args.decisions)
                print(f"  {results['keyboard']}", flush=True)
            if args.predict_rounds:
                print("POST /v1/predict, console on vs off:", flush=True)
                sqlite = f"sqlite:///{root / 'predict.db'}"
                results["predict"] = time_predict(lambda on: settings_for(on, sqlite), args.predict_rounds)
                print(f"  {results['predict']}", flush=True)
    finally:
        if created:
            with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{created}" WITH (FORCE)')
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
