"""KubeRay's RayJob for ``imgclf predict-batch`` (deploy/kubernetes/kuberay), checked without a cluster: against
KubeRay's RayJob CRD schema (vendored in tests/deploy/schemas/kuberay, strict as in test_kserve_manifests), its pod
templates against the Kubernetes API's Pod schema, then against the project: the entrypoint parses with the real
CLI, the paths it names are mounted, the claims exist, the Ray version is the one pinned."""

from __future__ import annotations

import copy
import json
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import ray
import typer
import yaml

from imgclf.cli import app as cli_app
from tests.deploy.test_kserve_manifests import strict

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERAY = KUBERNETES / "kuberay"
SCHEMA = Path(__file__).resolve().parent / "schemas" / "kuberay" / "rayjob.v1.json"


def documents() -> list[dict]:
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    found = []
    for name in kustomization["resources"]:
        found += [d for d in yaml.safe_load_all((KUBERAY / name).read_text()) if d]
    return found


def rayjob() -> dict:
    (job,) = [d for d in documents() if d["kind"] == "RayJob"]
    return job


def pod_specs(job: dict) -> list[dict]:
    cluster = job["spec"]["rayClusterSpec"]
    return [cluster["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in cluster["workerGroupSpecs"])]


def predict_batch_params(entrypoint: str) -> dict:
    """``imgclf predict-batch ...`` parsed by the real CLI (nothing runs)."""
    words = shlex.split(entrypoint)
    assert words[:2] == ["imgclf", "predict-batch"]
    command = typer.main.get_command(cli_app)
    context = command.make_context("imgclf", words[1:])
    name, sub, rest = command.resolve_command(context, [*context._protected_args, *context.args])
    return sub.make_context(name, rest, parent=context).params


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBERAY / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERAY.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    main = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    hosts = {image["newName"].split("/")[0] for image in main["images"]}
    (image,) = kustomization["images"]
    assert image["name"] == "imgclf-batch" and image["newName"].split("/")[0] in hosts
    assert all(c["image"] == "imgclf-batch" for spec in pod_specs(rayjob()) for c in spec["containers"])


def test_rayjob_matches_kuberay_crd_schema_and_pods_the_kubernetes_api():
    validator = jsonschema.Draft7Validator(strict(json.loads(SCHEMA.read_text())))
    job = rayjob()
    assert job["apiVersion"] == "ray.io/v1"
    validator.validate(job)
    broken = copy.deepcopy(job)
    broken["spec"]["shutdownAfterJobFinish"] = broken["spec"].pop("shutdownAfterJobFinishes")
    with pytest.raises(jsonschema.ValidationError):  # strict: a misspelled field is refused
        validator.validate(broken)
    version = kubernetes_validate.utils.latest_version()
    for spec in pod_specs(job):
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ray"}, "spec": spec}
        kubernetes_validate.validate(pod, version, strict=True)
    for document in documents():
        if document["kind"] != "RayJob":
            kubernetes_validate.validate(document, version, strict=True)


def test_entrypoint_is_a_real_predict_batch_on_mounted_paths():
    job = rayjob()
    params = predict_batch_params(job["spec"]["entrypoint"])
    assert params["resume"] and params["fmt"] in ("parquet", "jsonl", "csv") and params["address"] is None
    assert job["spec"]["rayClusterSpec"]["rayVersion"] == ray.__version__
    claims = {d["metadata"]["name"] for d in documents() if d["kind"] == "PersistentVolumeClaim"}
    claims |= {
        d["metadata"]["name"]
        for d in yaml.safe_load_all((KUBERNETES / "storage.yaml").read_text())
        if d and d["kind"] == "PersistentVolumeClaim"
    }
    paths = {"model": params["model"].split("@")[0], "source": params["source"], "out": str(params["out"])}
    for spec in pod_specs(job):  # the driver (head) and the actors (workers) see the same files
        volumes = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]}
        assert set(volumes.values()) <= claims
        (container,) = spec["containers"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        for what, path in paths.items():
            mount = [m for m in mounts if path.startswith(m + "/")]
            assert mount, f"{what} {path} is not on a mounted volume"
            assert what == "model" or not mounts[mount[0]].get("readOnly")
        assert spec["securityContext"]["runAsNonRoot"] and spec["securityContext"]["runAsUser"] != 0
    assert "imgclf-registry" in {v["persistentVolumeClaim"]["claimName"] for v in pod_specs(job)[0]["volumes"]}
