"""LiteRT variants vs the float SavedModel (issue 24): accuracy, agreement, size, latency, served throughput.

    flock /tmp/imgclf-heavy.lock nice -n 10 .venv/bin/python benchmarks/litert.py RUN [--alpha1] [--serve-seconds 20]

1. ``imgclf export RUN --tflite int8,float32`` (200 representative images) into a scratch registry:
   the model card's accuracy, top-1 agreement with float and ECE on the run's validation split, and
   the file sizes (int8 vs LiteRT float32, and vs the SavedModel's saved_model.pb + variables).
2. Latency p50 of the model alone (decoding excluded) at batch 1 and 32: float SavedModel
   (``serving_pixels``), LiteRT float32 and LiteRT int8 (XNNPACK, every core), on validation images.
3. ``--alpha1``: the same latency comparison for MobileNetV2 α 1.0 with random weights at the run's
   image size (converted by the same child process; int8 calibrated on 50 training images).
4. Served throughput at concurrency 32 (gRPC Predict, one image per request, batching on) of one
   ``imgclf serve`` engine with and without ``--prefer-tflite-model``, rounds alternating, in one run.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


def export_figures(run_dir: Path, registry: Path) -> tuple[Path, dict]:
    from imgclf import api
    from imgclf.contract import read_model_card

    started = time.perf_counter()
    version = api.export(run_dir, registry=registry, name="bench", tflite=["int8", "float32"])
    card = read_model_card(version)["litert"]
    saved_bytes = (version / "saved_model.pb").stat().st_size + sum(
        p.stat().st_size for p in (version / "variables").rglob("*") if p.is_file()
    )
    variants = card["variants"]
    return version, {
        "export_seconds": round(time.perf_counter() - started, 1),
        "measured_on": card["measured_on"],
        "int8": variants["int8"]["metrics"],
        "float32_litert": variants["float32"]["metrics"],
        "bytes": {
            "int8": variants["int8"]["bytes"],
            "float32_tflite": variants["float32"]["bytes"],
            "savedmodel": saved_bytes,
        },  # fmt: skip
        "size_ratio_float32_tflite_over_int8": variants["float32"]["bytes"] / variants["int8"]["bytes"],
        "size_ratio_savedmodel_over_int8": saved_bytes / variants["int8"]["bytes"],
        "int8_quantization": {k: variants["int8"][k] for k in ("input", "output")},
    }


def latency_rows(version: Path, images: list[bytes]) -> list[dict]:
    from imgclf.export.litert import compare_export_variants

    return compare_export_variants(version, ["float32", "int8"], images, None, latency_runs={1: 50, 32: 10})


def alpha1_rows(run_dir: Path, image_size: int) -> list[dict]:
    import keras

    from imgclf.export.litert import Runtime, compare, convert_in_child, float_model_scores, representative_paths
    from imgclf.preprocessing import PreprocessingSpec
    from imgclf.serving.litert import LiteRTModel

    spec = PreprocessingSpec(image_size=image_size)
    classes = len((run_dir / "labels.txt").read_text().split())
    base = keras.applications.MobileNetV2(
        alpha=1.0, include_top=False, weights=None, input_shape=(image_size, image_size, 3), pooling="avg"
    )
    model = keras.Model(base.input, keras.layers.Dense(classes, activation="softmax")(base.output))
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "alpha1.keras"
        model.save(checkpoint)
        targets = {v: Path(scratch) / f"{v}.tflite" for v in ("float32", "int8")}
        failed = {
            v: r
            for v, r in convert_in_child(
                checkpoint, spec, targets, representative_paths(run_dir / "data_manifest.csv", 50)
            ).items()
            if r
        }
        if failed:
            return [{"failed": failed}]
        rng = np.random.default_rng(0)
        pixels = rng.uniform(0, 255, (32, image_size, image_size, 3)).astype(np.float32)
        normalized = pixels / 127.5 - 1.0
        loaded = {v: LiteRTModel(targets[v]) for v in targets}
        runtimes = [Runtime("float (TensorFlow)", float_model_scores(model, spec), None, False)]
        runtimes += [Runtime(f"LiteRT {v}", m.run, m.size_bytes, True) for v, m in loaded.items()]
        return compare(runtimes, pixels, normalized, None, latency_runs={1: 50, 32: 10})


def _client(stub, requests, index: int, deadline: float) -> int:  # type: ignore[no-untyped-def]
    done = 0
    while time.perf_counter() < deadline:
        stub.Predict(requests[index % len(requests)], timeout=60)
        done += 1
    return done


def served_throughput(base_path: Path, images: list[bytes], seconds: float, rounds: int) -> dict:
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from imgclf.serving.options import BatchingParameters, ServerOptions
    from imgclf.serving.server import ModelServer

    results: dict[str, list[float]] = {"savedmodel": [], "litert": []}
    batching = BatchingParameters(max_batch_size=32, batch_timeout_micros=2000, max_enqueued_batches=1000,
                                  num_batch_threads=2)  # fmt: skip
    for _ in range(rounds):
        for name, prefer in (("savedmodel", False), ("litert", True)):
            server = ModelServer(ServerOptions(
                model_name="bench", model_base_path=base_path, rest_api_port=0, grpc_port=0, host="127.0.0.1",
                enable_batching=True, batching_parameters=batching, prefer_tflite_model=prefer,
                file_system_poll_wait_seconds=0,
            ))  # fmt: skip
            server.start()
            thread = threading.Thread(target=server.serve, daemon=True)
            thread.start()
            channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
            stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
            requests = []
            for image in images:
                request = predict_pb2.PredictRequest()
                request.model_spec.name = "bench"
                request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([image]))
                request.output_filter.append("scores")
                requests.append(request)
            for request in requests[:8]:
                stub.Predict(request, timeout=60)
            started = time.perf_counter()
            with ThreadPoolExecutor(32) as pool:
                end = started + seconds
                counts = list(pool.map(lambda i, s=stub, r=requests, e=end: _client(s, r, i, e), range(32)))
            results[name].append(sum(counts) / (time.perf_counter() - started))
            channel.close()
            server.begin_shutdown()
            thread.join(30)
    median = {name: float(np.median(values)) for name, values in results.items()}
    return {
        "rounds": results,
        "median_rps": median,
        "ratio_litert_over_savedmodel": median["litert"] / median["savedmodel"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--alpha1", action="store_true")
    parser.add_argument("--serve-seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    from imgclf.contract import read_model_card

    run_dir = args.run_dir.resolve()
    report: dict = {"run": str(run_dir), "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="imgclf-litert-bench-") as scratch:
        version, report["export"] = export_figures(run_dir, Path(scratch) / "registry")
        manifest = (run_dir / "data_manifest.csv").read_text().splitlines()[1:]
        val = [line.split(",")[0] for line in manifest if line.rsplit(",", 1)[-1] == "val"]
        images = [Path(path).read_bytes() for path in val[:: max(1, len(val) // 64)][:64]]
        report["latency"] = latency_rows(version, images)
        image_size = read_model_card(version)["image_size"]
        if args.alpha1:
            report["alpha1_random_latency"] = alpha1_rows(run_dir, image_size)
        if args.serve_seconds > 0:
            report["served_c32"] = served_throughput(version.parent, images, args.serve_seconds, args.rounds)
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
