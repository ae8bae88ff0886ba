"""Batch inference (issue 23): imgclf predict-batch vs the raw limit and vs imgclf predict, and its memory.

One run, one after the other on the same files and export:

1. raw limit: the export's ``serving_default`` called in this process on batches of 32 encoded images
   already in memory (TensorFlow's default threading: every core), after one warm-up batch;
2. ``imgclf predict-batch`` (embedded Ray, defaults) over the folder, through the Python API: images/s
   over its whole wall time (Ray's start and the actors' model loading included), and from its first
   result to its last (the pipeline's steady state);
3. ``imgclf predict MODEL FILE`` run once per file (what a shell loop does) on a sample, and
   ``imgclf predict MODEL FOLDER`` (one process, batches of 32) over every file;
4. peak memory of ``imgclf predict-batch`` at 2,000 and 20,000 inputs (manifests repeating the files):
   the largest sum of RSS over the command's process tree (driver, Ray's GCS and raylet, workers;
   shared pages counted once per process), sampled every 0.2 s, and the driver's own peak.

    .venv/bin/python benchmarks/batch_inference.py ../shared/data/cats_dogs --model REGISTRY/NAME --work /tmp/bench23
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
IMGCLF = [sys.executable, "-m", "imgclf.cli"]


def raw_limit(version_dir: Path, files: list[Path], batch_size: int = 32) -> float:
    import tensorflow as tf

    signature = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    data = [f.read_bytes() for f in files]
    signature(image_bytes=tf.constant(data[:batch_size]))  # warm-up
    start = time.perf_counter()
    for begin in range(0, len(data), batch_size):
        signature(image_bytes=tf.constant(data[begin : begin + batch_size]))["scores"].numpy()
    return len(data) / (time.perf_counter() - start)


def batch_job(source: str, model: str, out: Path) -> dict:
    code = f"""
import json, time
start = time.perf_counter()
import imgclf
marks = []
result = imgclf.predict_batch({source!r}, model={model!r}, out={str(out)!r},
                              progress=lambda done, total: marks.append((time.perf_counter() - start, done)))
first_t, first_n = marks[0]
print(json.dumps({{"images": result.images, "errors": result.errors, "wall_s": result.wall_s,
                  "images_per_s": result.images_per_s, "first_result_s": first_t,
                  "steady_images_per_s": (result.images - first_n) / (marks[-1][0] - first_t)}}))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def predict_per_file(model: str, files: list[Path]) -> float:
    start = time.perf_counter()
    for file in files:
        subprocess.run([*IMGCLF, "predict", model, str(file)], capture_output=True, check=True)
    return len(files) / (time.perf_counter() - start)


def predict_folder(model: str, folder: Path, count: int) -> float:
    start = time.perf_counter()
    subprocess.run([*IMGCLF, "predict", model, str(folder), "--json"], capture_output=True, check=True)
    return count / (time.perf_counter() - start)


def _tree_rss(root: int) -> tuple[int, int]:
    """(sum of RSS over ``root`` and its descendants, RSS of ``root``) in bytes."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            rss[int(entry.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += rss.get(pid, 0)
        stack += children.get(pid, [])
    return total, rss.get(root, 0)


def peak_memory(manifest: Path, model: str, out: Path) -> dict:
    process = subprocess.Popen(
        [*IMGCLF, "predict-batch", str(manifest), "--model", model, "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    peaks = {"tree": 0, "driver": 0}

    def sample() -> None:
        while process.poll() is None:
            tree, driver = _tree_rss(process.pid)
            peaks["tree"], peaks["driver"] = max(peaks["tree"], tree), max(peaks["driver"], driver)
            time.sleep(0.2)

    sampler = threading.Thread(target=sample)
    sampler.start()
    output = process.communicate()[0]
    sampler.join()
    assert process.returncode == 0, output
    return {"peak_tree_mib": peaks["tree"] / 2**20, "peak_driver_mib": peaks["driver"] / 2**20,
            "final_line": output.strip().splitlines()[-1]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--model", required=True, help="REGISTRY/NAME[/VERSION]")
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--per-file-sample", type=int, default=20)
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    from imgclf.data.sources import expand_paths
    from imgclf.registry.reference import resolve_reference

    args.work.mkdir(parents=True, exist_ok=True)
    files = expand_paths([args.data])
    version_dir = resolve_reference(args.model).path
    figures: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
                     "files": len(files), "model": str(version_dir)}  # fmt: skip
    figures["raw_images_per_s"] = raw_limit(version_dir, files)
    print(json.dumps(figures), flush=True)
    figures["batch"] = batch_job(str(args.data), args.model, args.work / f"out-{time.time_ns()}")
    print(json.dumps(figures), flush=True)
    sample = files[:: len(files) // args.per_file_sample]
    figures["predict_per_file_images_per_s"] = predict_per_file(args.model, sample)
    figures["predict_folder_images_per_s"] = predict_folder(args.model, args.data, len(files))
    print(json.dumps(figures), flush=True)
    if not args.skip_memory:
        for count in (2_000, 20_000):
            manifest = args.work / f"manifest-{count}.csv"
            manifest.write_text("path\n" + "".join(f"{files[i % len(files)]}\n" for i in range(count)))
            figures[f"memory_{count}"] = peak_memory(manifest, args.model, args.work / f"mem-{count}-{time.time_ns()}")
            print(json.dumps(figures), flush=True)
    batch = figures["batch"]
    figures["ratios"] = {
        "batch_vs_raw_wall": batch["images_per_s"] / figures["raw_images_per_s"],
        "batch_vs_raw_steady": batch["steady_images_per_s"] / figures["raw_images_per_s"],
        "batch_vs_predict_per_file": batch["images_per_s"] / figures["predict_per_file_images_per_s"],
        "batch_vs_predict_folder": batch["images_per_s"] / figures["predict_folder_images_per_s"],
    }
    if not args.skip_memory:
        figures["ratios"]["memory_20000_vs_2000"] = (
            figures["memory_20000"]["peak_tree_mib"] / figures["memory_2000"]["peak_tree_mib"]
        )
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
