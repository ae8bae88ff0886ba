"""KServe's ServingRuntime and InferenceService for ``imgclf serve`` (deploy/kubernetes/kserve), checked without a
cluster: against KServe's CRD schemas (vendored in tests/deploy/schemas/kserve, strict: unknown fields refused as
``kubectl --validate=strict`` refuses them), then against the project: the server's arguments parse with the real
CLI, its ports, probes and metrics path are the server's, the storage is the registry's claim."""

from __future__ import annotations

import copy
import json
import re
from functools import cache
from pathlib import Path

import jsonschema
import pytest
import typer
import yaml

from imgclf.cli import app as cli_app

ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = ROOT / "deploy" / "kubernetes"
KSERVE = KUBERNETES / "kserve"
SCHEMAS = Path(__file__).resolve().parent / "schemas" / "kserve"
SCHEMA_FILES = {
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "servingruntime.v1alpha1.json",
    ("serving.kserve.io/v1beta1", "InferenceService"): "inferenceservice.v1beta1.json",
}
DNS_1123 = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def strict(schema):  # type: ignore[no-untyped-def]
    """The schema with unknown fields refused wherever the CRD lists an object's fields and keeps no others."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if (
        "properties" in result
        and "additionalProperties" not in result
        and not result.get("x-kubernetes-preserve-unknown-fields")
    ):
        result["additionalProperties"] = False
    return result


@cache
def validator(api_version: str, kind: str) -> jsonschema.Draft7Validator:
    schema = json.loads((SCHEMAS / SCHEMA_FILES[(api_version, kind)]).read_text())
    return jsonschema.Draft7Validator(strict(schema))


def documents() -> list[dict]:
    kustomization = yaml.safe_load((KSERVE / "kustomization.yaml").read_text())
    result = []
    for name in kustomization["resources"]:
        result += [d for d in yaml.safe_load_all((KSERVE / name).read_text()) if d]
    return result


def of_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in documents() if d["kind"] == kind}


def serve_params(args: list[str]) -> dict:
    """``imgclf serve ARGS`` parsed by the real CLI (nothing runs): the parameters it would get."""
    command = typer.main.get_command(cli_app)
    context = command.make_context("imgclf", ["serve", *args])
    name, serve, rest = command.resolve_command(context, [*context._protected_args, *context.args])
    assert name == "serve"
    return serve.make_context(name, rest, parent=context).params


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KSERVE / "kustomization.yaml").read_text())
    files = {p.name for p in KSERVE.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    main = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    main_images = {image["name"]: image for image in main["images"]}
    for image in kustomization["images"]:  # the same image the main manifests deploy
        assert image == main_images[image["name"]]


def test_manifests_match_kserve_crd_schemas():
    found = documents()
    assert {(d["apiVersion"], d["kind"]) for d in found} == set(SCHEMA_FILES)
    for document in found:
        validator(document["apiVersion"], document["kind"]).validate(document)
        assert DNS_1123.fullmatch(document["metadata"]["name"])
    broken = copy.deepcopy(of_kind("InferenceService")["cats-dogs"])
    broken["spec"]["predictor"]["model"]["protocolVersoin"] = broken["spec"]["predictor"]["model"].pop(
        "protocolVersion"
    )
    with pytest.raises(jsonschema.ValidationError):  # strict: a misspelled field is refused
        validator(broken["apiVersion"], broken["kind"]).validate(broken)
    runtime = copy.deepcopy(of_kind("ServingRuntime")["imgclf-serve"])
    runtime["spec"]["containers"][0]["ports"][0]["containerPort"] = "8080"
    with pytest.raises(jsonschema.ValidationError):  # types: a port is an integer
        validator(runtime["apiVersion"], runtime["kind"]).validate(runtime)


def test_inference_service_runs_on_the_runtime_with_the_open_inference_protocol():
    runtimes = of_kind("ServingRuntime")
    (service,) = of_kind("InferenceService").values()
    model = service["spec"]["predictor"]["model"]
    runtime = runtimes[model["runtime"]]["spec"]
    assert model["protocolVersion"] == "v2" and {"v2", "grpc-v2", "v1"} <= set(runtime["protocolVersions"])
    assert model["modelFormat"] in [
        {"name": f["name"], "version": f["version"]} for f in runtime["supportedModelFormats"]
    ]
    claims = {d["metadata"]["name"] for d in yaml.safe_load_all((KUBERNETES / "storage.yaml").read_text()) if d}
    scheme, path = model["storageUri"].split("://", 1)
    assert scheme == "pvc" and path.split("/", 1)[0] in claims

    (container,) = runtime["containers"]
    assert container["name"] == "kserve-container"  # the container KServe merges the predictor's settings into
    params = serve_params([*container["args"], *model.get("args", [])])
    assert params["model_base_path"] == Path("/mnt/models")  # where KServe's storage initializer puts storageUri
    assert params["model_name"] == "cats_dogs" == path.split("/", 1)[1]  # the registry's name, not {{.Name}}
    assert serve_params(container["args"])["model_name"] == "{{.Name}}"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http1": params["rest_port"], "grpc": params["grpc_port"]}
    assert "grpc" in list(ports)[1]  # KServe gives a port named *grpc* an h2c Service port
    for probe, path_wanted in (("readinessProbe", "/v2/health/ready"), ("livenessProbe", "/v2/health/live")):
        assert container[probe]["httpGet"] == {"path": path_wanted, "port": params["rest_port"]}
    from imgclf.serving.rest import METRICS_PATH

    assert runtime["annotations"]["prometheus.kserve.io/path"] == METRICS_PATH
    assert int(runtime["annotations"]["prometheus.kserve.io/port"]) == params["rest_port"]
    assert container["securityContext"]["runAsNonRoot"] and container["securityContext"]["runAsUser"] != 0
    volumes = {v["name"] for v in runtime["volumes"]}
    assert {m["name"] for m in container["volumeMounts"]} <= volumes


def test_health_and_metrics_paths_are_the_servers(tmp_path):
    """The probes' and the scrape annotation's paths answer on a running ``imgclf serve``."""
    from tests.serving.conftest import running_server
    from tests.serving.toy_models import write_toy_model

    write_toy_model(tmp_path / "toy", 1)
    (runtime,) = of_kind("ServingRuntime").values()
    (container,) = runtime["spec"]["containers"]
    with running_server(model_name="toy", model_base_path=tmp_path / "toy") as server:
        for probe in ("readinessProbe", "livenessProbe"):
            assert server.rest.get(container[probe]["httpGet"]["path"]).status_code == 200
        metrics = server.rest.get(runtime["spec"]["annotations"]["prometheus.kserve.io/path"])
        assert metrics.status_code == 200 and ":tensorflow:serving:request_count" in metrics.text
