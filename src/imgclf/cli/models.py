"""``imgclf models``: the registry (list, show, gate, promote, roll back, label, policy, TF Serving config)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imgclf.cli.base import (
    ModelNameArgument,
    RegistryOption,
    VersionArgument,
    app,
    console,
    registry_store,
    table,
)

models_app = typer.Typer(
    help="The registry: list, inspect, gate, promote, roll back, label, delete.", no_args_is_help=True
)
app.add_typer(models_app, name="models")


def _print_state(name: str, state) -> None:  # type: ignore[no-untyped-def]
    labels = ", ".join(f"{label}={version}" for label, version in sorted(state.labels.items())) or "none"
    share = f", canary share {state.canary_share:.0%}" if state.canary is not None else ""
    console.print(f"{name}: {labels}{share}", highlight=False)


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    registry: RegistryOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every version's registry record as JSON.")] = False,
) -> None:
    """Versions with creation time, classes, key metrics, gate result and state."""
    from dataclasses import asdict

    from imgclf.monitoring.report import format_value

    listed = []

    store = registry_store(registry)
    rows = table("model", "version", "created", "classes", "accuracy", "macro F1", "gate", "state", "labels")
    broken = []
    for model in [name] if name else store.models():
        store.state(model)  # a clear error for an unknown name
        for version in store.versions(model):
            info = store.info(model, version)
            gate = (info.gate or "-") + (" forced" if info.overrides else "")
            f1 = info.metrics.get("macro_f1", info.gate_metrics.get("macro_f1"))
            listed.append({"model": model, "version": version, **asdict(info), "state": info.state})
            rows.add_row(
                model, str(version), (info.created_at or "")[:10], str(len(info.classes)),
                format_value(info.accuracy, 3), format_value(f1, 3), gate, info.state, ",".join(info.labels),
            )  # fmt: skip
            if not info.files.complete:
                broken.append(f"{model} version {version} cannot serve: {info.files.reason}")
    if as_json:
        print(json.dumps(listed, indent=2, default=str))
        return
    console.print(rows)
    for model in [name] if name else store.models():
        for decision in store.state(model).decisions[-3:]:  # the latest retraining and canary decisions
            why = "; ".join(decision.get("reasons", [])[:2])
            console.print(
                f"{decision.get('at', '')} {model} version {decision.get('version')}: {decision.get('kind')} "
                f"{decision.get('outcome')}" + (f" ({why})" if why else ""),
                highlight=False, markup=False,
            )  # fmt: skip
    for line in broken:
        console.print(line, highlight=False, markup=False)


@models_app.command("show")
def models_show(
    name: ModelNameArgument,
    version: VersionArgument,
    registry: RegistryOption = None,
) -> None:
    """The version's model card (JSON), with its labels and gate result."""
    from dataclasses import asdict

    store = registry_store(registry)
    info = store.info(name, version)
    decisions = [d for d in store.state(name).decisions if d.get("version") == version]  # retrain and judge
    registry_part = {**asdict(info), "state": info.state, "decisions": decisions}
    print(json.dumps({**store.card(name, version), "registry": registry_part}, indent=2))


@models_app.command("promote")
def models_promote(
    name: ModelNameArgument,
    version: VersionArgument,
    to: Annotated[str, typer.Option(help="stable or canary.")] = "stable",
    share: Annotated[float | None, typer.Option(help="Canary: share of traffic it gets (0..1).")] = None,
    force: Annotated[bool, typer.Option(help="Promote even if the gate did not bless the version.")] = False,
    registry: RegistryOption = None,
) -> None:
    """Point stable (or canary) at a blessed version; the gateway follows without a restart.

    --force promotes past the gate: the checks it overrides are printed and recorded with the version.
    """
    store = registry_store(registry)
    overridden = store.gate_failures(name, version) if force else []
    state = store.promote(name, version, to, share, force)
    if overridden:
        console.print(f"Override recorded for {name} version {version}; forced past:", highlight=False)
        for failure in overridden:
            console.print(f"  {failure}", highlight=False, markup=False)
    _print_state(name, state)


@models_app.command("gate")
def models_gate(
    name: ModelNameArgument,
    version: Annotated[int, typer.Argument(help="Candidate version.")],
    data: Annotated[str, typer.Option(help="Fixed evaluation set (folder or CSV; its val split if split).")],
    config: Annotated[Path | None, typer.Option(help='JSON {"thresholds": [...]} (default: built-in).')] = None,
    registry: RegistryOption = None,
) -> None:
    """Evaluate a candidate against thresholds and the stable version; bless it or say why not (exit 3)."""
    from imgclf.registry.gate import DEFAULT_THRESHOLDS, load_thresholds, run_gate

    thresholds = load_thresholds(config) if config else DEFAULT_THRESHOLDS
    result = run_gate(registry_store(registry), name, version, data, thresholds)
    baseline = f"stable version {result.baseline_version}" if result.baseline_version else "no baseline"
    console.print(f"{name} version {version} against {baseline} on {data}:", highlight=False)
    for check in result.checks:
        console.print(f"  {'pass' if check.passed else 'FAIL'}  {check.message}", highlight=False, markup=False)
    if not result.blessed:
        console.print(f"NOT BLESSED: {len(result.failed)} check(s) failed", highlight=False)
        raise typer.Exit(3)
    console.print("BLESSED", highlight=False)


@models_app.command("rollback")
def models_rollback(name: ModelNameArgument, registry: RegistryOption = None) -> None:
    """End the canary if there is one; otherwise move stable back to the previous stable version."""
    _print_state(name, registry_store(registry).rollback(name))


@models_app.command("unlabel")
def models_unlabel(
    name: ModelNameArgument,
    label: Annotated[str, typer.Argument(help="The label to remove (canary ends the canary; stable is refused).")],
    registry: RegistryOption = None,
) -> None:
    """Remove a version label; stable stays (roll back or promote another version instead)."""
    _print_state(name, registry_store(registry).unlabel(name, label))


@models_app.command("policy")
def models_policy(
    name: ModelNameArgument,
    policy: Annotated[
        str, typer.Argument(help="promoted: exports wait for promotion (default); latest: each export becomes stable.")
    ],
    registry: RegistryOption = None,
) -> None:
    """Choose whether new exports wait for promotion or serve at once (TF Serving's latest)."""
    state = registry_store(registry).set_policy(name, policy)
    console.print(f"{name}: policy {state.policy}", highlight=False)


@models_app.command("label")
def models_label(
    name: ModelNameArgument,
    version: VersionArgument,
    label: Annotated[str, typer.Argument(help="Label ([A-Za-z0-9_]+).")],
    registry: RegistryOption = None,
) -> None:
    """Attach a version label (TF Serving's version_labels); requests may ask for it by name."""
    _print_state(name, registry_store(registry).label(name, version, label))


@models_app.command("delete")
def models_delete(
    name: ModelNameArgument,
    version: VersionArgument,
    registry: RegistryOption = None,
) -> None:
    """Delete a version (refused while a label points at it)."""
    registry_store(registry).delete(name, version)
    console.print(f"Deleted {name} version {version}")


@models_app.command("tfserving-config")
def models_tfserving_config(
    out: Annotated[Path, typer.Option(help="Directory for models.config, batching.config, monitoring.config.")],
    base_path_prefix: Annotated[
        str | None, typer.Option(help="Where TF Serving sees the registry, e.g. /models (default: this path).")
    ] = None,
    watch: Annotated[
        float, typer.Option(help="Keep the files current: re-read the registry every N seconds (0: write once).")
    ] = 0,
    registry: RegistryOption = None,
) -> None:
    """Write TF Serving config files (model config with version labels, batching, monitoring)."""
    from imgclf.errors import ConfigError
    from imgclf.registry.tfserving import watch_tfserving_config, write_tfserving_config

    if watch < 0:
        raise ConfigError("--watch must be 0 (write once) or a number of seconds")
    if watch:
        from imgclf.logs import configure_json_logging

        configure_json_logging("INFO")  # one JSON line each time the files change, like the servers' logs
        console.print(f"Keeping {out} current with {registry_store(registry).root} every {watch:g} s (Ctrl+C stops)")
        watch_tfserving_config(registry_store(registry), out, base_path_prefix, interval=watch)
        return
    for path in write_tfserving_config(registry_store(registry), out, base_path_prefix):
        console.print(f"Wrote {path}")
    console.print(
        "Run: tensorflow_model_server --model_config_file=models.config --batching_parameters_file=batching.config "
        "--enable_batching --monitoring_config_file=monitoring.config --model_config_file_poll_wait_seconds=5 "
        "--rest_api_port=8501 --port=8500",
        highlight=False,
    )


# ---------------------------------------------------------------- entry point
