"""Multi-worker training: two ``imgclf train`` processes with ``TF_CONFIG`` on loopback ports train one model
with ``MultiWorkerMirroredStrategy`` for an epoch on real photos; the chief's run directory exports and serves.

Each worker writes its own run directory (TensorFlow's pattern: the chief's is the run, the other's is scratch).
Training is synchronous, so both end with the same weights: the proof that they trained one model together.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.conftest import write_csv
from tests.helpers import free_port

pytestmark = pytest.mark.slow


def test_two_workers_train_one_model_and_the_chiefs_export_serves(cats_dogs_dir, tmp_path):
    rows = []
    for split, folder, count in (("train", "train", 16), ("val", "validation", 8)):
        for label in ("cats", "dogs"):
            rows += [[str(p), label, split] for p in sorted((cats_dogs_dir / folder / label).iterdir())[:count]]
    manifest = write_csv(tmp_path / "subset.csv", rows)
    workers = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    processes = []
    for index, out in enumerate(("chief", "worker1")):
        env = dict(os.environ)
        env["TF_CONFIG"] = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
        command = [sys.executable, "-m", "imgclf.cli", "train", str(manifest), "--out", str(tmp_path / out),
                   "--model", "small_cnn", "--image-size", "32", "--epochs", "1", "--batch-size", "8"]  # fmt: skip
        log = (tmp_path / f"{out}.log").open("w")
        processes.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT))
    try:
        for process in processes:
            process.wait(timeout=300)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
    outputs = [(tmp_path / f"{out}.log").read_text() for out in ("chief", "worker1")]
    for process, output in zip(processes, outputs, strict=True):
        assert process.returncode == 0, output[-3000:]
        assert "on 2 replica(s) on several workers (MultiWorkerMirroredStrategy)" in output

    chief, other = (keras.saving.load_model(tmp_path / out / "weights" / "best.keras") for out in ("chief", "worker1"))
    for mine, theirs in zip(chief.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)

    import imgclf

    version = imgclf.export(tmp_path / "chief", registry=tmp_path / "registry", name="cats_dogs")
    photos = sorted((cats_dogs_dir / "validation" / "dogs").iterdir())[-3:]
    predictions = imgclf.load(tmp_path / "registry" / "cats_dogs").predict(photos)
    assert version.name == "1" and [p.source for p in predictions] == [str(p) for p in photos]
    assert all(p.label in ("cats", "dogs") and abs(sum(p.scores.values()) - 1) < 1e-4 for p in predictions)
