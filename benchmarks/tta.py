"""Test-time augmentation benchmark (issue 21): what ``imgclf export --tta`` gains and costs, in one run.

1. RUN is exported once per mode (default ``none`` and ``flip``; ``flip+crops`` on request) into a
   temporary registry, each as its own model.
2. Accuracy: the run's validation split (``RUN/data_manifest.csv``), every image's bytes through each
   export's ``serving_default`` (batches of 32); the decision is the export's own ``class_ids`` (its
   threshold or argmax on the averaged scores). Also the log loss, and how many images TTA fixed
   and broke compared with ``none``.
3. Cost, in interleaved rounds (each round measures every mode in turn, rotated; ratios are taken
   within a round: on a shared 2-core machine the speed drifts by 10-20% over minutes):
   - in process: ``serving_default`` on batches of 32 JPEGs (images/s) and on one image (p50 ms);
   - served: one ``imgclf serve --enable-batching`` per mode (started once), REST
     ``{"instances": [{"b64": ...}]}`` one image per request, closed-loop clients at concurrency
     32 (throughput) and 1 (latency); ``benchmarks/serving.py``'s load generator.

    .venv/bin/python benchmarks/tta.py --run RUN_DIR [--modes none flip flip+crops] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "src"))

from benchmarks.gateway import started_model_server  # noqa: E402
from benchmarks.serving import BATCHING, http_load, rest_requests  # noqa: E402


def export_modes(run: Path, registry: Path, modes: list[str]) -> dict[str, Path]:
    from imgclf.api import export

    exports = {}
    for mode in modes:
        started = time.perf_counter()
        exports[mode] = export(run, registry=registry, name=f"tta_{mode.replace('+', '_')}", tta=mode)
        print(f"exported {mode} in {time.perf_counter() - started:.0f} s: {exports[mode]}", flush=True)
    return exports


def validation_split(run: Path) -> tuple[list[bytes], np.ndarray, list[str]]:
    from imgclf.data.sources import load_dataset
    from imgclf.run_dir import RunDir

    run_dir = RunDir(run)
    classes = run_dir.read_labels()
    samples = load_dataset(run_dir.manifest).subset("val").samples
    return [s.path.read_bytes() for s in samples], np.array([classes.index(s.label) for s in samples]), classes


def accuracy(version_dir: Path, images: list[bytes], truth: np.ndarray) -> dict:
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    scores, decided = [], []
    started = time.perf_counter()
    for start in range(0, len(images), 32):
        answer = signature(image_bytes=tf.constant(images[start : start + 32]))
        scores.append(answer["scores"].numpy())
        decided.append(answer["class_ids"].numpy())
    seconds = time.perf_counter() - started
    scores, decided = np.concatenate(scores), np.concatenate(decided)
    true_scores = np.clip(scores[np.arange(len(truth)), truth], 1e-7, 1.0)
    return {
        "images": len(truth),
        "accuracy": float((decided == truth).mean()),
        "argmax_accuracy": float((scores.argmax(axis=1) == truth).mean()),  # binary: threshold 0.5
        "log_loss": float(-np.log(true_scores).mean()),
        "correct": (decided == truth).tolist(),
        "seconds": seconds,
    }


def in_process(version_dir: Path, images: list[bytes], seconds: float) -> dict:
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    batch = tf.constant((images * 32)[:32])
    for _ in range(2):
        signature(image_bytes=batch)
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        signature(image_bytes=batch)
        count += 32
    throughput = count / (time.perf_counter() - started)
    single = []
    for index in range(40):
        one = tf.constant([images[index % len(images)]])
        t0 = time.perf_counter()
        signature(image_bytes=one)
        single.append(time.perf_counter() - t0)
    return {"batch32_images_per_s": throughput, "single_image_p50_ms": statistics.median(single[5:]) * 1e3}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True, help="trained imgclf run directory")
    parser.add_argument("--modes", nargs="+", default=["none", "flip"], choices=["none", "flip", "flip+crops"])
    parser.add_argument("--count", type=int, default=64, help="distinct validation JPEGs cycled for speed")
    parser.add_argument("--seconds", type=float, default=8, help="measured seconds per mode, round and load")
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-threads", type=int, default=1)
    parser.add_argument("--skip-served", action="store_true", help="in-process speed only")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if args.modes[0] != "none":
        args.modes.insert(0, "none")  # the baseline every ratio is taken against

    run = args.run.resolve()
    images, truth, classes = validation_split(run)
    results: dict = {"run": str(run), "classes": classes, "validation_images": len(images), "modes": args.modes}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        exports = export_modes(run, Path(tmp) / "registry", args.modes)
        cards = {m: json.loads((p / "assets.extra" / "model_card.json").read_text()) for m, p in exports.items()}
        results["threshold"] = cards["none"]["decision"]["threshold"]

        results["accuracy"] = {mode: accuracy(path, images, truth) for mode, path in exports.items()}
        base = np.array(results["accuracy"]["none"]["correct"])
        for mode, row in results["accuracy"].items():
            correct = np.array(row.pop("correct"))
            row["fixed"] = int((correct & ~base).sum())
            row["broken"] = int((~correct & base).sum())
            row["delta"] = row["accuracy"] - results["accuracy"]["none"]["accuracy"]
            row["card_reference_accuracy"] = cards[mode]["monitoring"]["reference_accuracy"]
            print(f"accuracy {mode}: {row}", flush=True)

        speed_images = images[: args.count]
        servers = {}
        if not args.skip_served:
            batching = Path(tmp) / "batching.pbtxt"
            batching.write_text(BATCHING % args.batch_threads)
            for mode, path in exports.items():
                servers[mode] = (stack.enter_context(started_model_server(path.parent, batching)), path.parent.name)
        rounds = []
        for number in range(args.rounds):
            order = args.modes[number % len(args.modes) :] + args.modes[: number % len(args.modes)]
            row: dict = {"order": order}
            for mode in order:
                row[mode] = {"in_process": in_process(exports[mode], speed_images, args.seconds)}
                if mode in servers:
                    port, model = servers[mode]
                    requests = rest_requests(speed_images, model)
                    row[mode]["rest_c32"] = http_load(port, requests, 32, args.warmup, args.seconds)
                    row[mode]["rest_c1"] = http_load(port, requests, 1, args.warmup, args.seconds)
                print(f"round {number + 1} {mode}: {row[mode]}", flush=True)
            rounds.append(row)
        results["rounds"] = rounds
    results["ratios"] = ratios(rounds, args.modes)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    summarize(results)


def ratios(rounds: list[dict], modes: list[str]) -> dict:
    """Per mode: each figure over ``none``'s in the same round (median and range over rounds)."""
    figures = {
        "in_process_batch32_throughput": lambda r: r["in_process"]["batch32_images_per_s"],
        "in_process_single_p50": lambda r: r["in_process"]["single_image_p50_ms"],
        "served_c32_throughput": lambda r: r["rest_c32"]["throughput"] if "rest_c32" in r else None,
        "served_c1_p50": lambda r: r["rest_c1"]["p50_ms"] if "rest_c1" in r else None,
    }
    answer: dict = {}
    for mode in modes[1:]:
        answer[mode] = {}
        for name, figure in figures.items():
            values = [
                figure(row[mode]) / figure(row["none"]) for row in rounds if figure(row[mode]) and figure(row["none"])
            ]
            if values:
                answer[mode][name] = {"median": statistics.median(values), "min": min(values), "max": max(values)}
    return answer


def summarize(results: dict) -> None:
    print(f"\nvalidation split: {results['validation_images']} images; threshold {results['threshold']}")
    print("| tta | accuracy (export's decision) | delta | fixed | broken | argmax accuracy | log loss |")
    print("|---|---|---|---|---|---|---|")
    none = results["accuracy"]["none"]
    for mode, row in results["accuracy"].items():
        print(
            f"| {mode} | {row['accuracy']:.4f} | {row['delta']:+.4f} | {row['fixed']} | {row['broken']} | "
            f"{row['argmax_accuracy']:.4f} ({row['argmax_accuracy'] - none['argmax_accuracy']:+.4f}) | "
            f"{row['log_loss']:.4f} |"
        )
    print("\n| tta | figure | per round (mode / none) | median |")
    print("|---|---|---|---|")
    for mode, figures in results["ratios"].items():
        for name, value in figures.items():
            print(f"| {mode} | {name} | {value['min']:.2f}-{value['max']:.2f} | {value['median']:.2f} |")
    print("\nabsolute figures per round:")
    for number, row in enumerate(results["rounds"], start=1):
        for mode in results["modes"]:
            figures = row[mode]
            line = (
                f"  round {number} {mode}: in-process {figures['in_process']['batch32_images_per_s']:.1f} img/s "
                f"(batch 32), single p50 {figures['in_process']['single_image_p50_ms']:.1f} ms"
            )
            if "rest_c32" in figures:
                line += (
                    f"; served c32 {figures['rest_c32']['throughput']:.1f} req/s "
                    f"(p50 {figures['rest_c32']['p50_ms']:.0f} ms), c1 p50 {figures['rest_c1']['p50_ms']:.1f} ms, "
                    f"errors {figures['rest_c32']['errors'] + figures['rest_c1']['errors']}"
                )
            print(line)


if __name__ == "__main__":
    sys.exit(main())
