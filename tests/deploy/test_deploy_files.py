"""Deploy files, checked without Docker or a cluster: each file against its schema (BuildKit's
Dockerfile parser and hadolint, the Compose Specification, the Kubernetes API's OpenAPI schemas in
strict mode), then against the project itself: the commands they run parse with imgclf's real CLI,
the IMGCLF_* variables they set are real settings, and the parts refer to each other correctly."""

from __future__ import annotations

import copy
import fnmatch
import json
import re
import subprocess
import sys
from importlib import resources
from pathlib import Path

import dockerfile
import jsonschema
import kubernetes_validate
import pytest
import typer
import yaml

from imgclf.cli import app as cli_app
from imgclf.config import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILES = sorted((DEPLOY / "docker").glob("*.Dockerfile"))
KUBERNETES = DEPLOY / "kubernetes"
# The oldest Kubernetes the manifests promise to work on (native sidecars need 1.29) and the newest schemas.
KUBERNETES_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())


def parse_cli(args: list[str]) -> str:
    """Parse ``imgclf ARGS`` with the real CLI (nothing runs); return the command path.

    Raises typer's UsageError for an unknown command or option, or a value of the wrong type.
    """
    command = typer.main.get_command(cli_app)
    context = command.make_context("imgclf", list(args))
    while hasattr(command, "resolve_command"):  # a group: descend into the subcommand
        name, command, rest = command.resolve_command(context, [*context._protected_args, *context.args])
        context = command.make_context(name, rest, parent=context)
    return context.command_path


def known_variables() -> set[str]:
    """IMGCLF_* names something reads: the gateway's settings and deploy/gunicorn.conf.py."""
    settings = {f"IMGCLF_{name.upper()}" for name in GatewaySettings.model_fields}
    gunicorn = set(re.findall(r"\"(IMGCLF_\w+)\"", (DEPLOY / "gunicorn.conf.py").read_text()))
    return settings | gunicorn


def imgclf_variables(environment: dict[str, str]) -> set[str]:
    return {name for name in environment if name.startswith("IMGCLF_")}


# ------------------------------------------------------------------------------------- Dockerfiles


def dockerignore_includes(path: str) -> bool:
    """Whether the build context keeps ``path`` (.dockerignore: the last matching pattern wins)."""
    patterns = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()]
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    included = True
    for pattern in (p for p in patterns if p and not p.startswith("#")):
        negated = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            included = negated
    return included


def stages(path: Path) -> list[list[dockerfile.Command]]:
    result: list[list[dockerfile.Command]] = []
    for instruction in dockerfile.parse_file(str(path)):
        if instruction.cmd == "FROM":
            result.append([])
        if result:
            result[-1].append(instruction)
    return result


def exec_form(instruction: dockerfile.Command) -> list[str]:
    assert instruction.json, f"{instruction.original}: use the exec form so signals reach the process"
    return list(instruction.value)


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_is_multi_stage_non_root_with_a_healthcheck(path):
    built = stages(path)
    assert len(built) >= 2, "multi-stage: build tools stay out of the runtime image"
    runtime = {instruction.cmd: instruction for instruction in built[-1]}
    user = runtime["USER"].value[0].split(":")[0]
    assert user not in ("0", "root") and user.isdigit(), "numeric non-root user (runAsNonRoot can verify it)"
    healthcheck = runtime["HEALTHCHECK"]
    assert exec_form(healthcheck)[0] == "CMD" and "/healthz" in " ".join(healthcheck.value)
    assert {flag.split("=")[0] for flag in healthcheck.flags} >= {"--interval", "--timeout", "--start-period"}
    assert any(i.cmd in ("CMD", "ENTRYPOINT") for i in built[-1])
    copied_from_build = [i for i in built[-1] if i.cmd == "COPY" and any(f.startswith("--from=") for f in i.flags)]
    assert copied_from_build, "the runtime stage takes the installed environment from the build stage"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_copies_only_what_the_build_context_has(path):
    for instruction in dockerfile.parse_file(str(path)):
        if instruction.cmd != "COPY" or any(flag.startswith("--from=") for flag in instruction.flags):
            continue
        for source in instruction.value[:-1]:
            assert (ROOT / source).exists(), f"{path.name}: COPY {source}: no such file"
            assert dockerignore_includes(source), f"{path.name}: COPY {source}: excluded by .dockerignore"
    assert not dockerignore_includes("tests/conftest.py") and not dockerignore_includes(".venv/bin/python")


def test_hadolint_passes():
    hadolint = Path(sys.executable).with_name("hadolint")
    result = subprocess.run([str(hadolint), *map(str, DOCKERFILES)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_commands_are_real_cli_invocations():
    gateway = {i.cmd: i for i in dockerfile.parse_file(str(DEPLOY / "docker" / "gateway.Dockerfile"))}
    command = exec_form(gateway["CMD"])
    assert command[:2] == ["gunicorn", "--config"]
    copied = [i.value for i in dockerfile.parse_file(str(DEPLOY / "docker" / "gateway.Dockerfile")) if i.cmd == "COPY"]
    assert any(value[-1] == command[2] for value in copied), "the gunicorn config is copied where CMD reads it"

    server = {i.cmd: i for i in dockerfile.parse_file(str(DEPLOY / "docker" / "model-server.Dockerfile"))}
    entrypoint, arguments = exec_form(server["ENTRYPOINT"]), exec_form(server["CMD"])
    assert entrypoint[0] == "imgclf" and parse_cli(entrypoint[1:] + arguments) == "imgclf serve"
    with pytest.raises(typer._click.exceptions.UsageError):  # the check notices a misspelled flag
        parse_cli(["serve", "--model-config", "/config/models.config"])


# ------------------------------------------------------------------------------------- Compose


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def compose_schema() -> dict:
    vendor = resources.files("check_jsonschema") / "builtin_schemas" / "vendor" / "compose-spec.json"
    return json.loads(vendor.read_text())


def test_compose_file_matches_the_compose_specification():
    schema, document = compose_schema(), compose()
    jsonschema.validate(document, schema)
    broken = copy.deepcopy(document)
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    with pytest.raises(jsonschema.ValidationError):  # the schema refuses unknown keys
        jsonschema.validate(broken, schema)


def test_compose_has_the_whole_stack_and_it_fits_together():
    document = compose()
    services = document["services"]
    for wanted in ("gateway", "model-server", "postgres", "redis", "prometheus", "grafana", "tfserving"):
        assert wanted in services
    for name, service in services.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in services, (name, dependency)
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("${"):
                continue  # the registry directory: the user's
            if source.startswith("."):
                assert (DEPLOY / source).exists(), (name, source)
            else:
                assert source in document["volumes"], (name, source)
        if "build" in service:
            assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).is_file()
        if "profiles" not in service and name not in ("tfserving-config",):
            assert "healthcheck" in service, f"{name} has no healthcheck"
        environment = service.get("environment", {})
        assert imgclf_variables(environment) <= known_variables(), (name, imgclf_variables(environment))

    server = services["model-server"]["command"]
    assert parse_cli(["serve", *server]) == "imgclf serve"
    sidecar = services["tfserving-config"]
    assert parse_cli(sidecar["command"]) == "imgclf models tfserving-config"
    config_dir = sidecar["command"][sidecar["command"].index("--out") + 1]
    assert f"tfserving-config:{config_dir}" in sidecar["volumes"]
    assert "tfserving-config:/config:ro" in services["model-server"]["volumes"]
    assert "/config/models.config" in server and "/config/batching.config" in server
    tfserving = " ".join(services["tfserving"]["command"])
    assert "--model_config_file=/config/models.config" in tfserving

    gateway_env = services["gateway"]["environment"]
    assert gateway_env["IMGCLF_BACKEND"].endswith("model-server:8500}")
    assert "@postgres:5432/" in gateway_env["IMGCLF_DATABASE_URL"] and "redis:6379" in gateway_env["IMGCLF_REDIS_URL"]

    grafana = services["grafana"]["volumes"]
    provider = yaml.safe_load((DEPLOY / "grafana" / "provisioning" / "dashboards" / "imgclf.yml").read_text())
    assert f"./grafana/dashboards:{provider['providers'][0]['options']['path']}:ro" in grafana
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for job in prometheus["scrape_configs"]:
        for discovery in job["dns_sd_configs"]:
            assert all(host in services for host in discovery["names"]), job["job_name"]


def test_documented_compose_commands_parse():
    """The `docker compose ... run --rm cli ARGS` lines in compose.yaml and the README are real commands."""
    lines = [*(DEPLOY / "compose.yaml").read_text().splitlines(), *(ROOT / "README.md").read_text().splitlines()]
    commands = [
        line.split("run --rm cli ", 1)[1].split("`")[0].split("#")[0].split()
        for line in lines
        if "run --rm cli " in line
    ]
    assert len(commands) >= 4
    for command in commands:
        parse_cli(command)


# ------------------------------------------------------------------------------------- Kubernetes


def manifests() -> list[dict]:
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    documents = []
    for name in kustomization["resources"]:
        documents += [d for d in yaml.safe_load_all((KUBERNETES / name).read_text()) if d]
    return documents


def of_kind(kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def test_kustomization_lists_every_manifest():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    assert {image["name"] for image in kustomization["images"]} == {"imgclf-gateway", "imgclf-model-server"}


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_kubernetes_manifests_match_the_api_schemas(version):
    documents = manifests()
    kinds = {d["kind"] for d in documents}
    wanted = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "ConfigMap", "Secret"}
    assert wanted <= kinds
    for document in documents:
        kubernetes_validate.validate(document, version, strict=True)
    broken = copy.deepcopy(of_kind("Deployment")["imgclf-gateway"])
    container = broken["spec"]["template"]["spec"]["containers"][0]
    container["readinesProbe"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError):  # strict: a misspelled field is refused
        kubernetes_validate.validate(broken, version, strict=True)


def test_kubernetes_manifests_fit_together():
    deployments, services = of_kind("Deployment"), of_kind("Service")
    config_maps, secrets, claims = of_kind("ConfigMap"), of_kind("Secret"), of_kind("PersistentVolumeClaim")
    assert set(deployments) == {"imgclf-gateway", "imgclf-model-server"}
    for name, deployment in deployments.items():
        pod = deployment["spec"]["template"]
        labels = pod["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        security = pod["spec"]["securityContext"]
        assert security["runAsNonRoot"] and security["runAsUser"] != 0
        ports = {p["name"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
        volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
        for container in pod["spec"]["containers"] + pod["spec"].get("initContainers", []):
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            for mount in container["volumeMounts"]:
                assert mount["name"] in volumes, (name, mount["name"])
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    assert source["configMapRef"]["name"] in config_maps
                else:
                    assert source["secretRef"]["name"] in secrets
        for container in pod["spec"]["containers"]:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["port"] in ports, (name, probe)
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        for volume in volumes.values():
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in claims
            if "configMap" in volume:
                assert volume["configMap"]["name"] in config_maps
        for kind in ("HorizontalPodAutoscaler", "PodDisruptionBudget"):
            assert name in of_kind(kind), f"{name} has no {kind}"
        assert of_kind("HorizontalPodAutoscaler")[name]["spec"]["scaleTargetRef"]["name"] == name
        assert of_kind("PodDisruptionBudget")[name]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    for name, service in services.items():
        selected = [d for d in deployments.values() if service["spec"]["selector"].items() <= d["spec"]["template"][
            "metadata"]["labels"].items()]  # fmt: skip
        assert len(selected) == 1, name
        ports = {p["name"] for c in selected[0]["spec"]["template"]["spec"]["containers"] for p in c["ports"]}
        assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports, name


def test_kubernetes_commands_and_settings_are_real():
    settings = of_kind("ConfigMap")["imgclf-gateway-settings"]["data"]
    secret = of_kind("Secret")["imgclf-gateway-secrets"]["stringData"]
    assert imgclf_variables(settings) | imgclf_variables(secret) <= known_variables()
    assert {"IMGCLF_DATABASE_URL", "IMGCLF_REDIS_URL"} <= set(secret)  # credentials only in the Secret
    assert not {"IMGCLF_DATABASE_URL", "IMGCLF_REDIS_URL"} & set(settings)
    backend = settings["IMGCLF_BACKEND"].removeprefix("grpc://").split(":")[0]
    headless = of_kind("Service")[backend]
    assert headless["spec"]["clusterIP"] == "None", "gRPC balances per request only over a headless Service"

    pod = of_kind("Deployment")["imgclf-model-server"]["spec"]["template"]["spec"]
    server = pod["containers"][0]
    assert parse_cli(["serve", *server["args"]]) == "imgclf serve"
    sidecar = pod["initContainers"][0]
    assert sidecar["restartPolicy"] == "Always"
    assert parse_cli([*sidecar["command"][1:], *sidecar["args"]]) == "imgclf models tfserving-config"
    batching = server["args"][server["args"].index("--batching-parameters-file") + 1]
    mounted = {m["mountPath"] for m in server["volumeMounts"]}
    assert str(Path(batching).parent) in mounted
    config_file = server["args"][server["args"].index("--model-config-file") + 1]
    out = sidecar["args"][sidecar["args"].index("--out") + 1]
    assert str(Path(config_file).parent) == out
