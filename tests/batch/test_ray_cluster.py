"""Scale-out: imgclf predict-batch --address on a real two-node Ray cluster (``ray start`` on loopback).

Ray's actor table (the GCS's record of every actor, which Ray's state API reads; ``ray.util.state``
itself needs the dashboard's HTTP server, which ``ray[data]`` does not install) must show model
actors on both nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from tests.batch.ray_cluster import loopback_cluster

pytestmark = pytest.mark.slow

ACTOR_NODES = """
import json, ray, ray._private.state as state
ray.init(address="{address}", logging_level="ERROR", log_to_driver=False)
nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
actors = [(a["ActorClassName"], a["Address"]["NodeID"]) for a in state.actors().values()]
print(json.dumps({{"nodes": nodes, "actors": actors}}))
"""


def test_predict_batch_runs_model_actors_on_both_nodes(cats_dogs_dir, cats_dogs_registry, tmp_path):
    files = sorted((cats_dogs_dir / "validation" / "cats").iterdir())[:24]
    manifest = tmp_path / "inputs.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},cats\n" for p in files))
    with loopback_cluster() as cluster:
        command = [sys.executable, "-m", "imgclf.cli", "predict-batch", str(manifest), "--model",
                   str(cats_dogs_registry / "cats_dogs"), "--out", str(tmp_path / "out"), "--address",
                   cluster.address, "--batch-size", "4"]  # fmt: skip
        job = subprocess.run(command, env=cluster.env, capture_output=True, text=True, timeout=300)
        assert job.returncode == 0, job.stderr
        assert "24 images, 0 errors" in job.stdout
        probe = [sys.executable, "-c", ACTOR_NODES.format(address=cluster.address)]
        state = subprocess.run(probe, env=cluster.env, capture_output=True, text=True, timeout=120)
        assert state.returncode == 0, state.stderr
    found = json.loads(state.stdout.strip().splitlines()[-1])
    assert len(found["nodes"]) == 2
    model_nodes = {node for name, node in found["actors"] if "SignatureClassifier" in name}
    assert model_nodes == set(found["nodes"]), found
    rows = pq.read_table(tmp_path / "out").to_pylist()
    assert sorted(r["path"] for r in rows) == sorted(str(Path(p)) for p in files)
