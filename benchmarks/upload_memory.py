"""Gateway memory under a burst of large uploads, with and without the upload budget (issue 17).

``--uploads`` clients (default 50) each send one ~9.5 MB PNG of noise (just under the 10 MiB
per-image limit; it decodes to ~9.5 MB of pixels) at the same moment to ``imgclf gateway``
(SQLite, the local backend). The gateway process's RSS is sampled every 20 ms from /proc.
Reported per setting: RSS before, peak, and 5 s after the burst, and the answers (200 or 503
``upload_capacity``). Settings: the budget off (``IMGCLF_MAX_BYTES_IN_FLIGHT`` huge) and the default
(256 MiB).

    .venv/bin/python benchmarks/upload_memory.py --export REGISTRY/NAME [--uploads 50]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.gateway import started_gateway  # noqa: E402


def noise_png(side: int = 1780, seed: int = 0) -> bytes:
    import io

    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def gateway_pid(port: int) -> int:
    """The process listening on ``port`` (the imgclf gateway started for this run)."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "0A":
            inode = fields[9]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if any(Path(fd).readlink().name == f"socket:[{inode}]" for fd in (proc / "fd").iterdir()):
                    return int(proc.name)
            except OSError:
                continue
    raise RuntimeError(f"no process listens on {port}")


def burst(port: int, key: str, image: bytes, uploads: int) -> tuple[Counter[int], float, float, float]:
    pid = gateway_pid(port)
    before = rss_mb(pid)
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], rss_mb(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    barrier = threading.Barrier(uploads)

    def one(i: int) -> int:
        with httpx.Client(timeout=300) as http:
            barrier.wait()
            files = [("files", (f"{i}.png", image, "image/png"))]
            return http.post(f"http://127.0.0.1:{port}/v1/predict", files=files,
                             headers={"Authorization": f"Bearer {key}"}).status_code  # fmt: skip

    with ThreadPoolExecutor(uploads) as pool:
        statuses = Counter(pool.map(one, range(uploads)))
    time.sleep(5)
    done.set()
    sampler.join()
    return statuses, before, peak[0], rss_mb(pid)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", type=Path, required=True, help="REGISTRY/NAME of an exported model")
    parser.add_argument("--uploads", type=int, default=50)
    args = parser.parse_args()
    image = noise_png()
    print(f"upload: {len(image) / 1e6:.1f} MB PNG, {args.uploads} at once")
    batching = Path(tempfile.mkdtemp()) / "batching.config"
    batching.write_text("max_batch_size { value: 16 }\nbatch_timeout_micros { value: 2000 }\n")
    for name, budget in (("budget off", str(1 << 40)), ("budget 256 MiB (default)", None)):
        work = Path(tempfile.mkdtemp(prefix="imgclf-upload-memory-"))
        settings = {"IMGCLF_MAX_BYTES_IN_FLIGHT": budget} if budget else {}
        with started_gateway(name.split()[1], f"sqlite:///{work / 'db.sqlite'}", args.export.resolve(), batching,
                             work, settings) as (port, key):  # fmt: skip
            statuses, before, peak, after = burst(port, key, image, args.uploads)
        print(f"{name:26s} RSS before {before:7.0f} MB  peak {peak:7.0f} MB (+{peak - before:5.0f})  "
              f"5 s after {after:7.0f} MB  answers {dict(statuses)}")  # fmt: skip


if __name__ == "__main__":
    main()
