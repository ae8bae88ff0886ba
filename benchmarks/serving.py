"""Serving benchmark: imgclf serve (REST b64 and gRPC, TF Serving's protocol and the Open Inference Protocol)
vs the raw model vs Flask + gunicorn.

All in one run, on one machine, with the same real JPEGs:

- raw limit: the export's ``serving_default`` signature called in-process on batches of 32 image
  byte strings (images/s), and on one image (single-image latency);
- ``imgclf serve --enable-batching``: closed-loop clients at each concurrency, over REST
  (``{"instances": [{"b64": ...}]}``, one image per request) and over gRPC (official stubs);
  and over the Open Inference Protocol (KServe v2): gRPC ``ModelInfer`` with the image in
  ``raw_input_contents`` (what ``tritonclient.grpc`` sends; ``v2grpc``) and REST with the binary
  tensor data extension both ways (``v2rest``). The server's protocols take turns at each
  concurrency, ``--rounds`` times, so they share the machine's conditions;
- the tutorials' deployment: Flask under gunicorn (``benchmarks/flask_app.py``), one multipart
  upload per request, Pillow decode + ``model.predict``.

Clients are asyncio coroutines (a minimal HTTP/1.1 keep-alive client, ``grpc.aio``) in this
process, so they cost little CPU next to the server they measure.

    .venv/bin/python benchmarks/serving.py --run RUN_DIR --export REGISTRY/NAME --images DIR
    # the Open Inference Protocol against TF Serving's gRPC, 3 rounds:
    .venv/bin/python benchmarks/serving.py --run RUN_DIR --export REGISTRY/NAME --images DIR \
        --skip raw rest flask --concurrency 8 32 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SERVER_PROTOCOLS = ("rest", "grpc", "v2grpc", "v2rest")
BATCHING = """max_batch_size { value: 32 }
batch_timeout_micros { value: 0 }
max_enqueued_batches { value: 1000 }
num_batch_threads { value: %d }
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def latest_version(export: Path) -> Path:
    return max((p for p in export.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def raw_limit(export: Path, images: list[bytes], seconds: float) -> dict:
    import tensorflow as tf

    signature = tf.saved_model.load(str(latest_version(export))).signatures["serving_default"]
    batch = tf.constant((images * 32)[:32])
    for _ in range(3):
        signature(image_bytes=batch)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        signature(image_bytes=batch)
        count += 32
    throughput = count / (time.perf_counter() - started)
    single = []
    for index in range(60):
        one = tf.constant([images[index % len(images)]])
        t0 = time.perf_counter()
        signature(image_bytes=one)
        single.append(time.perf_counter() - t0)
    return {"batch32_images_per_s": throughput, "single_image_p50_ms": statistics.median(single[10:]) * 1e3}


def wait_until_ready(url_host: str, port: int, path: str, process: subprocess.Popen, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}")
        try:
            with socket.create_connection((url_host, port), timeout=1) as sock:
                sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit("server did not become ready")


# ---------------------------------------------------------------- load generation


async def _http_exchange(port: int, request: bytes, state: dict) -> int:
    if state.get("writer") is None:
        state["reader"], state["writer"] = await asyncio.open_connection("127.0.0.1", port)
    reader, writer = state["reader"], state["writer"]
    writer.write(request)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length, close = 0, False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection" and value.strip().lower() == b"close":
            close = True
    await reader.readexactly(length)
    if close:
        writer.close()
        state["writer"] = None
    return status


async def _closed_loop(
    send, requests: list, concurrency: int, warmup: float, seconds: float, think: float = 0.0
) -> dict:  # type: ignore[no-untyped-def]
    """``concurrency`` clients, each sending its next request when the last is answered (after
    ``think`` seconds: a paced load below saturation instead of as fast as possible)."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from, stop_at = start + warmup, start + warmup + seconds

    async def client(index: int) -> None:
        nonlocal errors
        state: dict = {}
        position = index
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                break
            try:
                ok = await send(requests[position % len(requests)], state)
            except Exception:
                ok = False
                state["writer"] = None
            t1 = time.perf_counter()
            position += concurrency
            if t0 >= measure_from:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1
            if think:
                await asyncio.sleep(think)

    await asyncio.gather(*(client(i) for i in range(concurrency)))
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1e3 if latencies else float("nan")

    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "throughput": len(latencies) / seconds,
        "think_ms": think * 1e3,
        "p50_ms": pct(0.50),
        "p95_ms": pct(0.95),
        "p99_ms": pct(0.99),
    }


def http_load(
    port: int, requests: list[bytes], concurrency: int, warmup: float, seconds: float, think: float = 0.0
) -> dict:
    async def send(request: bytes, state: dict) -> bool:
        return await _http_exchange(port, request, state) == 200

    return asyncio.run(_closed_loop(send, requests, concurrency, warmup, seconds, think))


def grpc_load(port: int, images: list[bytes], model: str, concurrency: int, warmup: float, seconds: float) -> dict:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    requests = []
    for image in images:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([image]))
        requests.append(request)

    async def run() -> dict:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)

            async def send(request, state: dict) -> bool:  # type: ignore[no-untyped-def]
                await stub.Predict(request, timeout=30)
                return True

            return await _closed_loop(send, requests, concurrency, warmup, seconds)

    return asyncio.run(run())


def v2_grpc_load(port: int, images: list[bytes], model: str, concurrency: int, warmup: float, seconds: float) -> dict:
    """OIP ``ModelInfer``: one BYTES image in ``raw_input_contents``, every output back (as Predict answers)."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    requests = []
    for image in images:
        request = service_pb2.ModelInferRequest(model_name=model)
        request.inputs.add(name="image_bytes", datatype="BYTES", shape=[1])
        request.raw_input_contents.append(struct.pack("<I", len(image)) + image)
        requests.append(request)

    async def run() -> dict:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)

            async def send(request, state: dict) -> bool:  # type: ignore[no-untyped-def]
                await stub.ModelInfer(request, timeout=30)
                return True

            return await _closed_loop(send, requests, concurrency, warmup, seconds)

    return asyncio.run(run())


def v2_rest_requests(images: list[bytes], model: str) -> list[bytes]:
    """OIP REST with the binary tensor data extension: the image raw after the JSON header, outputs raw back."""
    out = []
    for image in images:
        data = struct.pack("<I", len(image)) + image
        header = json.dumps(
            {
                "inputs": [{"name": "image_bytes", "shape": [1], "datatype": "BYTES",
                            "parameters": {"binary_data_size": len(data)}}],
                "parameters": {"binary_data_output": True},
            }
        ).encode()  # fmt: skip
        head = (
            f"POST /v2/models/{model}/infer HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Inference-Header-Content-Length: {len(header)}\r\nContent-Length: {len(header) + len(data)}\r\n\r\n"
        )
        out.append(head.encode() + header + data)
    return out


def rest_requests(images: list[bytes], model: str) -> list[bytes]:
    out = []
    for image in images:
        body = json.dumps({"instances": [{"b64": base64.b64encode(image).decode()}]}).encode()
        head = (
            f"POST /v1/models/{model}:predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


def multipart_requests(images: list[bytes], path: str, field: str, extra_headers: str = "") -> list[bytes]:
    """One raw HTTP/1.1 POST per image: a multipart upload of the image in form field ``field``."""
    out = []
    boundary = "imgclfbenchboundary"
    for image in images:
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="image.jpg"\r\n'
                "Content-Type: image/jpeg\r\n\r\n"
            ).encode()
            + image
            + f"\r\n--{boundary}--\r\n".encode()
        )
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra_headers}"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        out.append(head.encode() + body)
    return out


def flask_requests(images: list[bytes]) -> list[bytes]:
    return multipart_requests(images, "/predict", "file")


# ---------------------------------------------------------------- main


def stop(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="imgclf run directory (Flask baseline's model)")
    parser.add_argument("--export", type=Path, required=True, help="REGISTRY/NAME with integer versions")
    parser.add_argument("--images", type=Path, required=True, help="folder of JPEGs (searched recursively)")
    parser.add_argument("--count", type=int, default=64, help="distinct images to cycle through")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--batch-threads", type=int, default=1)
    parser.add_argument("--flask-workers", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=1, help="times each server protocol runs at each concurrency")
    parser.add_argument("--skip", nargs="*", default=[], choices=["raw", *SERVER_PROTOCOLS, "flask"])
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    files = sorted(p for p in args.images.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))[: args.count]
    images = [f.read_bytes() for f in files]
    model = args.export.name
    results: dict = {"images": len(images), "mean_jpeg_kb": float(np.mean([len(i) for i in images]) / 1024)}
    print(f"{len(images)} JPEGs, mean {results['mean_jpeg_kb']:.1f} kB", flush=True)

    if "raw" not in args.skip:
        results["raw"] = raw_limit(args.export, images, args.seconds)
        print("raw", results["raw"], flush=True)

    protocols = [name for name in SERVER_PROTOCOLS if name not in args.skip]
    if protocols:
        rest_port, grpc_port = free_port(), free_port()
        with tempfile.NamedTemporaryFile("w", suffix=".pbtxt", delete=False) as params:
            params.write(BATCHING % args.batch_threads)
        command = [
            str(REPO / ".venv/bin/imgclf"), "serve", "--model-name", model, "--model-base-path", str(args.export),
            "--rest-port", str(rest_port), "--grpc-port", str(grpc_port), "--host", "127.0.0.1",
            "--enable-batching", "--batching-parameters-file", params.name, "--log-level", "warning",
        ]  # fmt: skip
        server = subprocess.Popen(command)
        loads = {
            "rest": lambda c: http_load(rest_port, rest_requests(images, model), c, args.warmup, args.seconds),
            "grpc": lambda c: grpc_load(grpc_port, images, model, c, args.warmup, args.seconds),
            "v2grpc": lambda c: v2_grpc_load(grpc_port, images, model, c, args.warmup, args.seconds),
            "v2rest": lambda c: http_load(rest_port, v2_rest_requests(images, model), c, args.warmup, args.seconds),
        }
        try:
            wait_until_ready("127.0.0.1", rest_port, "/readyz", server)
            for concurrency in args.concurrency:
                for round_number in range(args.rounds):
                    for name in protocols:  # in turns, so each meets the same conditions
                        result = {**loads[name](concurrency), "round": round_number}
                        results.setdefault(name, []).append(result)
                        print(name, result, flush=True)
        finally:
            stop(server)
            os.unlink(params.name)

    if "flask" not in args.skip:
        port = free_port()
        env = {**os.environ, "IMGCLF_BENCH_RUN": str(args.run), "TF_CPP_MIN_LOG_LEVEL": "2"}
        command = [
            str(REPO / ".venv/bin/gunicorn"), "-w", str(args.flask_workers), "-b", f"127.0.0.1:{port}",
            "--timeout", "120", "--log-level", "warning", "benchmarks.flask_app:app",
        ]  # fmt: skip
        flask = subprocess.Popen(command, cwd=REPO, env=env)
        try:
            _wait_for_flask(port, images[0], flask)
            requests = flask_requests(images)
            for concurrency in args.concurrency:
                result = http_load(port, requests, concurrency, args.warmup, args.seconds)
                results.setdefault("flask", []).append(result)
                print("flask", result, flush=True)
        finally:
            stop(flask)

    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    summarize(results)


def _wait_for_flask(port: int, image: bytes, process: subprocess.Popen) -> None:
    request = flask_requests([image])[0]
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("gunicorn exited")
        try:
            if asyncio.run(_http_exchange(port, request, {})) == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("flask app did not answer")


def median_rows(rows: list[dict]) -> dict[int, dict]:
    """Per concurrency, the round with the median throughput (all of a round's figures belong together)."""
    by_concurrency: dict[int, list[dict]] = {}
    for row in rows:
        by_concurrency.setdefault(row["concurrency"], []).append(row)
    return {c: sorted(rs, key=lambda r: r["throughput"])[(len(rs) - 1) // 2] for c, rs in by_concurrency.items()}


def summarize(results: dict) -> None:
    print("\n| server | concurrency | req/s | p50 ms | p95 ms | p99 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for name in (*SERVER_PROTOCOLS, "flask"):
        for row in results.get(name, []):
            print(
                f"| {name} | {row['concurrency']} | {row['throughput']:.1f} | {row['p50_ms']:.1f} | "
                f"{row['p95_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']} |"
            )
    grpc = median_rows(results.get("grpc", []))
    for name in ("v2grpc", "v2rest"):
        rows = median_rows(results.get(name, []))
        if 32 in rows and 32 in grpc:
            rounds = [r for r in results[name] if r["concurrency"] == 32]
            ratios = [
                r["throughput"] / g["throughput"]
                for r, g in zip(rounds, [g for g in results["grpc"] if g["concurrency"] == 32], strict=False)
            ]
            print(
                f"{name} c32: {rows[32]['throughput'] / grpc[32]['throughput']:.2f}x TF Serving gRPC (medians); "
                f"per round {' '.join(f'{x:.2f}' for x in ratios)}"
            )
        if 8 in rows:
            baseline = grpc.get(8, {}).get("p99_ms", float("nan"))
            print(f"{name} c8: p99 {rows[8]['p99_ms']:.1f} ms (TF Serving gRPC {baseline:.1f} ms)")
    raw = results.get("raw")
    if raw:
        print(
            f"\nraw limit: {raw['batch32_images_per_s']:.1f} images/s (batch 32); "
            f"single image p50 {raw['single_image_p50_ms']:.1f} ms"
        )
        for name in ("rest", "grpc"):
            rows = {r["concurrency"]: r for r in results.get(name, [])}
            flask = {r["concurrency"]: r for r in results.get("flask", [])}
            if 32 in rows:
                ratio = rows[32]["throughput"] / raw["batch32_images_per_s"]
                line = f"{name} c32: {ratio:.2f}x raw"
                if 32 in flask:
                    line += f", {rows[32]['throughput'] / flask[32]['throughput']:.2f}x flask"
                print(line)
            if 1 in rows:
                print(
                    f"{name} c1: p50 {rows[1]['p50_ms']:.1f} ms = raw single + "
                    f"{rows[1]['p50_ms'] - raw['single_image_p50_ms']:.1f} ms"
                )


if __name__ == "__main__":
    sys.exit(main())
