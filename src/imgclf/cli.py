"""The ``imgclf`` command line. Thin: parse options, call a library function, print.

Errors the user can act on (``imgclf.errors.ImgclfError``) print one line and exit 2; anything
unexpected prints one line and exits 1. ``--debug`` (anywhere on the line) shows tracebacks.
Heavy imports (TensorFlow) happen inside commands so ``imgclf --help`` stays fast.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

app = typer.Typer(
    name="imgclf",
    help="From a folder of labelled images to a production image classifier on TensorFlow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
data_app = typer.Typer(help="Check and split datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
keys_app = typer.Typer(help="Create, list and revoke the gateway's API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
reviews_app = typer.Typer(help="Work with the gateway's review queue.", no_args_is_help=True)
app.add_typer(reviews_app, name="reviews")
models_app = typer.Typer(
    help="The registry: list, inspect, gate, promote, roll back, label, delete.", no_args_is_help=True
)
app.add_typer(models_app, name="models")
monitor_app = typer.Typer(help="Drift and prediction quality of the served model.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")
console = Console()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
) -> None:
    """imgclf: check data, train, evaluate, export and classify images."""


# ---------------------------------------------------------------- data


@data_app.command("check")
def data_check(
    path: Annotated[
        Path, typer.Argument(help="Class-per-folder tree (with or without split folders) or CSV manifest.")
    ],
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the full report as JSON here.")] = None,
    min_side: Annotated[int, typer.Option(help="Images with a shorter side are reported as tiny.")] = 32,
) -> None:
    """Report corrupt files, wrong extensions, duplicates, leakage, imbalance and odd images."""
    from imgclf.data.checks import check_dataset
    from imgclf.data.sources import load_dataset

    report = check_dataset(load_dataset(path), min_side=min_side)
    _print_check(report)
    if json_out is not None:
        from imgclf.run_dir import write_json

        write_json(json_out, report.to_dict())
        console.print(f"JSON report: {json_out}")


def _print_check(report) -> None:  # type: ignore[no-untyped-def]
    counts = Table(title=f"{report.root} ({report.kind})")
    counts.add_column("class")
    splits = list(report.counts)
    for split in splits:
        counts.add_column(split, justify="right")
    for name in report.classes:
        counts.add_row(name, *[str(report.counts[s].get(name, 0)) for s in splits])
    console.print(counts)
    console.print(f"imbalance ratio (largest/smallest class): {report.imbalance_ratio}")
    problems = Table(title="checks")
    problems.add_column("check")
    problems.add_column("found", justify="right")
    problems.add_column("examples")
    examples = {
        "unusable": [f"{u['path']} ({u['problem']})" for u in report.unusable],
        "extension_mismatch": [f"{m['path']} is {m['actual_format']}" for m in report.extension_mismatch],
        "tiny_images": [f"{t['path']} {t['width']}x{t['height']}" for t in report.tiny_images],
        "grayscale": report.color_modes.get("grayscale", []),
        "cmyk": report.color_modes.get("cmyk", []),
        "alpha": report.color_modes.get("alpha", []),
        "animated": report.animated,
    }
    for kind, key in (
        ("duplicates_within_class", "within_class"),
        ("conflicting_labels", "across_classes"),
        ("leakage", "across_splits"),
    ):
        groups = report.exact_duplicates.get(key, []) + report.near_duplicates.get(key, [])
        examples[kind] = [" = ".join(f["path"] for f in g["files"]) for g in groups]
    for check, found in report.summary.items():
        if check == "files":
            continue
        shown = examples.get(check, [])[:2]
        style = "red" if found else "green"
        problems.add_row(check, f"[{style}]{found}[/{style}]", "\n".join(shown))
    console.print(problems)


@data_app.command("split")
def data_split(
    path: Annotated[Path, typer.Argument(help="Dataset folder or CSV manifest.")],
    out: Annotated[Path, typer.Option("--out", help="Manifest CSV to write (path,label,split).")],
    val: Annotated[float, typer.Option("--val", help="Validation fraction.")] = 0.2,
    test: Annotated[float, typer.Option("--test", help="Test fraction.")] = 0.0,
    seed: Annotated[int, typer.Option(help="Random seed; same seed, same split.")] = 42,
) -> None:
    """Deterministic stratified split; near-duplicates stay in the same split. Existing split folders are ignored."""
    from imgclf.data.prepare import usable_samples
    from imgclf.data.sources import load_dataset, write_manifest
    from imgclf.data.splits import assign_splits, split_summary

    dataset = load_dataset(path)
    samples, infos, skipped = usable_samples(dataset)
    assigned = assign_splits(samples, infos, val, test, seed)
    write_manifest(assigned, out)
    table = Table(title=f"split written to {out}")
    table.add_column("split")
    table.add_column("images", justify="right")
    for split, per_class in split_summary(assigned).items():
        table.add_row(split, str(sum(per_class.values())))
    console.print(table)
    if skipped:
        console.print(f"{len(skipped)} unusable file(s) left out (see `imgclf data check`)")


# ---------------------------------------------------------------- train / evaluate / export


@app.command()
def train(
    data: Annotated[Path, typer.Argument(help="Dataset folder or CSV manifest.")],
    out: Annotated[Path, typer.Option("--out", help="Run directory to create (or resume).")],
    model: Annotated[
        str, typer.Option(help="small_cnn, mobilenet_v2, mobilenet, efficientnet_b0 or resnet50.")
    ] = "mobilenet_v2",
    alpha: Annotated[float | None, typer.Option(help="Width multiplier (MobileNet family).")] = None,
    weights: Annotated[
        str, typer.Option(help="imagenet (needs internet), none, or a local no-top weights file.")
    ] = "imagenet",
    image_size: Annotated[int | None, typer.Option(help="Square input size in pixels (default per model).")] = None,
    resize: Annotated[str, typer.Option(help="stretch, crop or pad.")] = "stretch",
    epochs: Annotated[int, typer.Option(help="Epochs (head phase for pretrained backbones).")] = 10,
    fine_tune_epochs: Annotated[
        int | None, typer.Option(help="Fine-tuning epochs (default epochs/2; 0 to skip).")
    ] = None,
    fine_tune_fraction: Annotated[
        float, typer.Option(help="Top fraction of backbone layers to fine-tune (1: all of it).")
    ] = 1.0,
    batch_size: Annotated[int, typer.Option(help="Batch size per replica.")] = 32,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Learning rate (default 1e-3).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share when the data has no val split.")] = 0.2,
    class_weights: Annotated[str, typer.Option(help="auto, balanced or none.")] = "auto",
    label_smoothing: Annotated[
        float, typer.Option(help="Soften the targets: 0.1 trains towards 0.9 for the class (0: off).")
    ] = 0.0,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs.")] = 4,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Random flips, rotation, zoom, shifts, contrast.")
    ] = True,
    flip: Annotated[str, typer.Option(help="horizontal, vertical, horizontal_and_vertical or none.")] = "horizontal",
    rotation: Annotated[float, typer.Option(help="Max rotation, fraction of a full turn.")] = 0.05,
    zoom: Annotated[float, typer.Option(help="Max zoom, fraction of the size.")] = 0.1,
    translation: Annotated[float, typer.Option(help="Max shift, fraction of the size.")] = 0.1,
    contrast: Annotated[float, typer.Option(help="Max contrast change factor.")] = 0.1,
    mixed_precision: Annotated[
        bool, typer.Option("--mixed-precision", help="float16 compute, float32 outputs (GPU).")
    ] = False,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Cache decoded images in memory.")] = True,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 42,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the interrupted run in --out (with its saved config).")
    ] = False,
) -> None:
    """Train a classifier; every run directory keeps its config, labels, history, curves and best checkpoint."""
    from pydantic import ValidationError

    from imgclf import api
    from imgclf.config import AugmentationConfig, TrainConfig
    from imgclf.errors import ConfigError

    try:
        config = TrainConfig(
            data=str(data),
            out=str(out),
            model=model,
            alpha=alpha,
            weights=weights,
            image_size=image_size,
            resize_mode=resize,
            epochs=epochs,
            fine_tune_epochs=fine_tune_epochs,
            fine_tune_fraction=fine_tune_fraction,
            batch_size=batch_size,
            learning_rate=learning_rate,
            val_fraction=val_fraction,
            class_weights=class_weights,
            label_smoothing=label_smoothing,
            early_stopping_patience=patience,
            augmentation=AugmentationConfig(
                enabled=augment, flip=flip, rotation=rotation, zoom=zoom, translation=translation, contrast=contrast
            ),
            mixed_precision=mixed_precision,
            cache=cache,
            seed=seed,
        )
    except ValidationError as exc:
        raise ConfigError(_first_validation_error(exc)) from None
    api.train(data, out=out, config=config, resume=resume, report=console.print)


def _first_validation_error(exc) -> str:  # type: ignore[no-untyped-def]
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]).replace("_", "-")
    option = {"model": "model", "resize-mode": "resize", "augmentation.flip": "flip"}.get(where, where)
    return f"invalid --{option}: {error['msg']} (got {error.get('input')!r})"


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="Run directory from `imgclf train`.")],
    data: Annotated[Path | None, typer.Option(help="Another dataset (folder or CSV) to evaluate on.")] = None,
    split: Annotated[str | None, typer.Option(help="Split of --data to use (default val, else test).")] = None,
    target_precision: Annotated[float | None, typer.Option(help="Binary: threshold reaching this precision.")] = None,
    target_recall: Annotated[float | None, typer.Option(help="Binary: threshold reaching this recall.")] = None,
) -> None:
    """Per-class metrics, confusion matrix, ROC/PR, calibration and a decision threshold (binary)."""
    from imgclf import api

    metrics = api.evaluate(run_dir, data, split, target_precision, target_recall)
    table = Table(title=f"evaluation on {metrics['data']} ({metrics['num_examples']} images)")
    for column in ("class", "precision", "recall", "f1", "support"):
        table.add_column(column, justify="left" if column == "class" else "right")
    for name, row in metrics["per_class"].items():
        table.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    console.print(table)
    headline = ", ".join(
        f"{key} {metrics[key]:.4f}"
        for key in ("accuracy", "macro_f1", "roc_auc", "log_loss", "expected_calibration_error")
        if metrics.get(key) is not None
    )
    console.print(headline)
    if "threshold" in metrics:
        t = metrics["threshold"]
        console.print(
            f"threshold for {t['positive_class']}: {t['threshold']:.4f} ({t['objective']}; "
            f"precision {t['precision']:.3f}, recall {t['recall']:.3f})"
        )
    console.print(f"Results: {Path(run_dir) / 'eval'}")


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Run directory from `imgclf train`.")],
    registry: Annotated[Path, typer.Option(help="Registry directory; the model goes to REGISTRY/NAME/<version>.")],
    name: Annotated[str | None, typer.Option(help="Model name (default: the run directory's name).")] = None,
    reference_data: Annotated[
        str | None,
        typer.Option(
            help="Images for the drift reference profile (folder or CSV; default: the run's validation split)."
        ),
    ] = None,
) -> None:
    """Write a versioned SavedModel that takes encoded image bytes (TF Serving can load it).

    The first version of a model becomes stable; later versions are candidates until promoted.
    """
    from imgclf import api
    from imgclf.registry.store import Registry

    path = api.export(run_dir, registry=registry, name=name, reference_data=reference_data)
    console.print(f"Exported {path}", highlight=False)
    model, version = path.parent.name, int(path.name)
    state = Registry(path.parent.parent).state(model)
    if state.stable == version:
        why = "the model's policy is latest" if len(state.history) > 1 else "the model's first version"
        console.print(f"{model} version {version} is stable ({why}).", highlight=False)
    else:
        console.print(
            f"{model} version {version} is a candidate: stable version {state.stable} keeps serving. Next:\n"
            f"  imgclf models gate {model} {version} --data EVAL_DATA\n"
            f"  imgclf models promote {model} {version} --to canary --share 0.1",
            highlight=False,
        )


@app.command()
def predict(
    model_dir: Annotated[
        Path, typer.Argument(help="Export version directory, or a model directory (the version serving).")
    ],
    images: Annotated[list[Path], typer.Argument(help="Image files.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
) -> None:
    """Classify image files with an exported model."""
    from imgclf import api

    results = api.load(model_dir).classify_files(images)  # a registry model: the version its traffic gets
    for result in results:
        if as_json:
            print(json.dumps(result.to_dict()))
        elif result.error:
            console.print(f"{result.path}: [red]error[/red] {result.error}")
        else:
            top = sorted(result.scores.items(), key=lambda kv: -kv[1])[:3]
            shown = "  ".join(f"{label} {score:.3f}" for label, score in top)
            console.print(f"{result.path}: [bold]{result.label}[/bold] ({result.confidence:.3f})  {shown}")
    failed = sum(1 for r in results if r.error)
    if failed:
        print(f"error: {failed} of {len(results)} file(s) could not be classified", file=sys.stderr)
        raise typer.Exit(2)


@app.command()
def serve(
    model_name: Annotated[str, typer.Option("--model-name", help="Name to serve the model under.")] = "default",
    model_base_path: Annotated[
        Path | None, typer.Option("--model-base-path", help="Directory holding integer version directories.")
    ] = None,
    model_config_file: Annotated[
        Path | None, typer.Option("--model-config-file", help="TF Serving model config (text proto); several models.")
    ] = None,
    model_config_file_poll_wait_seconds: Annotated[
        float, typer.Option("--model-config-file-poll-wait-seconds", help="Re-read the config file (0: never).")
    ] = 0,
    file_system_poll_wait_seconds: Annotated[
        float, typer.Option("--file-system-poll-wait-seconds", help="Poll for new versions (0: only at start).")
    ] = 1,
    rest_port: Annotated[int, typer.Option("--rest-port", "--rest-api-port", help="REST port.")] = 8501,
    grpc_port: Annotated[int, typer.Option("--grpc-port", "--port", help="gRPC port.")] = 8500,
    host: Annotated[
        str,
        typer.Option(
            help="Interface to listen on. 0.0.0.0 (every interface) as TF Serving; the model server has no "
            "authentication, so keep it on a private network (or 127.0.0.1) behind the gateway."
        ),
    ] = "0.0.0.0",
    enable_batching: Annotated[bool, typer.Option("--enable-batching", help="Merge concurrent requests.")] = False,
    batching_parameters_file: Annotated[
        Path | None, typer.Option("--batching-parameters-file", help="TF Serving BatchingParameters (text proto).")
    ] = None,
    enable_model_warmup: Annotated[
        bool, typer.Option("--enable-model-warmup/--no-model-warmup", help="Replay assets.extra warmup requests.")
    ] = True,
    rest_api_timeout_in_ms: Annotated[int, typer.Option("--rest-api-timeout-in-ms", help="REST deadline.")] = 30000,
    intra_op: Annotated[
        int, typer.Option("--tensorflow-intra-op-parallelism", help="Threads inside one op (0: all cores).")
    ] = 0,
    inter_op: Annotated[
        int, typer.Option("--tensorflow-inter-op-parallelism", help="Ops run at once (0: TensorFlow decides).")
    ] = 0,
    grpc_max_threads: Annotated[
        int, typer.Option("--grpc-max-threads", help="gRPC handler threads (requests served at once).")
    ] = 128,
    grace: Annotated[float, typer.Option("--shutdown-grace-seconds", help="Time to drain on SIGTERM.")] = 30,
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve exported models over TF Serving's REST and gRPC protocol (batching, hot version swaps)."""
    from imgclf.logs import configure_json_logging
    from imgclf.serving.options import ServerOptions, load_batching_parameters
    from imgclf.serving.server import ModelServer

    configure_json_logging(log_level)
    options = ServerOptions(
        model_name=model_name,
        model_base_path=model_base_path,
        model_config_file=model_config_file,
        model_config_file_poll_wait_seconds=model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=file_system_poll_wait_seconds,
        rest_api_port=rest_port,
        grpc_port=grpc_port,
        host=host,
        rest_api_timeout_in_ms=rest_api_timeout_in_ms,
        enable_batching=enable_batching,
        batching_parameters=load_batching_parameters(batching_parameters_file) if batching_parameters_file else None,
        enable_model_warmup=enable_model_warmup,
        tensorflow_intra_op_parallelism=intra_op,
        tensorflow_inter_op_parallelism=inter_op,
        grpc_max_threads=grpc_max_threads,
        shutdown_grace_seconds=grace,
    )
    server = ModelServer(options)
    server.start()
    server.serve()


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where to put the demo's data, run and export.")] = Path("demo_output"),
    serve: Annotated[bool, typer.Option(help="End with the gateway running on the demo's model.")] = True,
    port: Annotated[int, typer.Option(help="The gateway's port.")] = 8000,
) -> None:
    """Run the whole lifecycle on a synthetic dataset (no data, weights or internet needed), then serve it."""
    from imgclf.demo import reserve_port, run_demo, serve_demo

    sock = reserve_port("127.0.0.1", port) if serve else None
    run_demo(out, report=console.print)
    if sock is not None:
        serve_demo(out, sock, report=print)  # plain print: commands must not be wrapped


# ---------------------------------------------------------------- gateway


@app.command()
def gateway(
    registry: Annotated[
        Path | None, typer.Option(help="Model registry (default IMGCLF_REGISTRY or ./registry).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name in the registry (default: its only model).")] = None,
    backend: Annotated[
        str | None,
        typer.Option(help="local (in-process), http://HOST:8501 or grpc://HOST:8500 (imgclf serve or TF Serving)."),
    ] = None,
    host: Annotated[str | None, typer.Option(help="Interface to listen on (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8000).")] = None,
) -> None:
    """Run the prediction API: keys, rate limits, validation, prediction log, review queue.

    Everything else comes from IMGCLF_* environment variables (database, Redis, limits...); see
    the README's gateway section.
    """
    from imgclf.gateway.server import run_gateway

    overrides = {"registry": registry, "model_name": model, "backend": backend, "host": host, "port": port}
    settings = _gateway_settings(**{k: v for k, v in overrides.items() if v is not None})
    if not settings.registry.is_dir():
        from imgclf.errors import ConfigError

        raise ConfigError(f"registry {settings.registry} is not a directory (use --registry)")
    run_gateway(settings)


# ---------------------------------------------------------------- keys


def _gateway_settings(**overrides):  # type: ignore[no-untyped-def]
    """``GatewaySettings`` from IMGCLF_* variables; a bad value is one error line naming the variable."""
    from pydantic import ValidationError

    from imgclf.config import GatewaySettings
    from imgclf.errors import ConfigError

    try:
        return GatewaySettings(**overrides)
    except ValidationError as exc:
        error = exc.errors()[0]
        name = "IMGCLF_" + "_".join(str(p) for p in error["loc"]).upper()
        raise ConfigError(f"invalid {name}: {error['msg']} (got {error.get('input')!r})") from None


def _gateway_database():  # type: ignore[no-untyped-def]
    from imgclf.storage.database import connect

    return connect(_gateway_settings().database_url)


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: predict, review, admin.")] = "predict",
) -> None:
    """Create an API key and print it once (only its hash is stored). Database: IMGCLF_DATABASE_URL."""
    from imgclf.gateway.api_keys import create_key

    created = create_key(_gateway_database(), name, scopes)
    console.print(f"Created key {created.info.prefix} ({created.info.name}; scopes {','.join(created.info.scopes)})")
    console.print("Store it now, it is not shown again:")
    print(created.secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (prefix, name, scopes, created, revoked)."""
    from imgclf.gateway.api_keys import list_keys

    table = Table("prefix", "name", "scopes", "created", "revoked")
    for key in list_keys(_gateway_database()):
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else ""
        table.add_row(key.prefix, key.name, ",".join(key.scopes), key.created_at.strftime("%Y-%m-%d %H:%M"), revoked)
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's prefix (ik_xxxxxxxx) or id.")]) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    from imgclf.gateway.api_keys import revoke_key

    console.print(f"Revoked {revoke_key(_gateway_database(), key).prefix}")


# ---------------------------------------------------------------- reviews


@reviews_app.command("export")
def reviews_export(
    out: Annotated[Path, typer.Option(help="CSV manifest to write (path,label), for imgclf train.")],
    since: Annotated[
        datetime.datetime | None, typer.Option(help="Only reviews made at or after this time (UTC).")
    ] = None,
) -> None:
    """Write reviewed images and their labels as a CSV manifest that imgclf train accepts."""
    from imgclf.gateway.review_export import export_reviews
    from imgclf.storage.image_store import ImageStore

    settings = _gateway_settings()
    summary = export_reviews(_gateway_database(), ImageStore(settings.image_store_dir), out, since)
    console.print(
        f"Wrote {summary.rows} reviewed image(s) in {len(summary.labels)} class(es) to {out}"
        + (f"; {summary.missing_images} image(s) no longer in the store were skipped" if summary.missing_images else "")
    )


# ---------------------------------------------------------------- monitor


def _monitored_model(registry: Path | None, model: str | None):  # type: ignore[no-untyped-def]
    from imgclf.errors import ConfigError
    from imgclf.gateway.runtime import resolve_model_name
    from imgclf.monitoring.jobs import ProfileCache

    settings = _gateway_settings(**({"registry": registry} if registry else {}))
    name = resolve_model_name(settings.registry, model)
    if not (settings.registry / name).is_dir():
        raise ConfigError(f"model {name!r} is not in the registry {settings.registry} (use --model or --registry)")
    return settings, ProfileCache(settings.registry), name


@monitor_app.command("drift")
def monitor_drift(
    model: Annotated[str | None, typer.Option(help="Model name (default: the registry's only model).")] = None,
    version: Annotated[int | None, typer.Option(help="Version (default: the newest one with predictions).")] = None,
    since: Annotated[str | None, typer.Option(help="Predictions of this last period: 30m, 24h, 7d.")] = None,
    window: Annotated[
        int | None, typer.Option(help="The newest N predictions (default IMGCLF_DRIFT_WINDOW, 1000, without --since).")
    ] = None,
    registry: Annotated[Path | None, typer.Option(help="Registry directory (default IMGCLF_REGISTRY).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    html: Annotated[Path | None, typer.Option(help="Also write an HTML report with the distributions.")] = None,
    fail_on_drift: Annotated[bool, typer.Option(help="Exit with status 3 when drift is detected.")] = False,
) -> None:
    """Compare recent predictions with the version's reference profile (PSI, JS, KS, MMD)."""
    from imgclf.monitoring.drift import DriftThresholds
    from imgclf.monitoring.jobs import drift_check, now_minus, parse_duration
    from imgclf.monitoring.report import report_lines, write_html_report, write_json_report

    settings, profiles, name = _monitored_model(registry, model)
    start = now_minus(parse_duration(since)) if since else None
    size = window if window is not None else (None if since else settings.drift_window)
    report, profile, observed = drift_check(
        _gateway_database(), profiles, name, version, start, size, DriftThresholds.from_settings(settings)
    )
    for line in report_lines(report):
        console.print(line, highlight=False, markup=False)
    if json_out:
        write_json_report(report, json_out)
        console.print(f"JSON report: {json_out}")
    if html:
        write_html_report(report, profile, observed, html)
        console.print(f"HTML report: {html}")
    if fail_on_drift and report.verdict == "drift":
        raise typer.Exit(3)


@monitor_app.command("quality")
def monitor_quality(
    model: Annotated[str | None, typer.Option(help="Model name (default: the registry's only model).")] = None,
    since: Annotated[str, typer.Option(help="Period to cover: 24h, 7d, 4w.")] = "7d",
    bucket: Annotated[str, typer.Option(help="Time bucket: 1h, 1d, ...")] = "1d",
    registry: Annotated[Path | None, typer.Option(help="Registry directory (default IMGCLF_REGISTRY).")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the rows as JSON here.")] = None,
) -> None:
    """Quality per version over time: needs-review rate, confidence, estimated and realized accuracy."""
    import json

    from imgclf.monitoring.jobs import now_minus, parse_duration, quality_over_time
    from imgclf.monitoring.report import format_value

    _, profiles, name = _monitored_model(registry, model)
    points = quality_over_time(
        _gateway_database(), profiles, name, now_minus(parse_duration(since)), parse_duration(bucket)
    )
    table = Table(
        "version", "from", "predictions", "needs review", "mean conf.", "est. accuracy", "reviewed", "realized acc."
    )
    for point in points:
        q = point.quality
        table.add_row(
            str(point.model_version), point.bucket_start, str(q.predictions), format_value(q.needs_review_rate, 3),
            format_value(q.mean_confidence, 3), format_value(q.estimated_accuracy, 3), str(q.reviewed),
            format_value(q.realized_accuracy, 3),
        )  # fmt: skip
    console.print(table)
    if json_out:
        json_out.write_text(json.dumps([p.to_dict() for p in points], indent=2) + "\n", encoding="utf-8")


# ---------------------------------------------------------------- models

RegistryOption = Annotated[Path | None, typer.Option(help="Registry directory (default IMGCLF_REGISTRY).")]
ModelNameArgument = Annotated[str, typer.Argument(help="Model name.")]
VersionArgument = Annotated[int, typer.Argument(help="Version.")]


def _registry(registry: Path | None):  # type: ignore[no-untyped-def]
    from imgclf.registry.store import Registry

    return Registry(registry or _gateway_settings().registry)


def _print_state(name: str, state) -> None:  # type: ignore[no-untyped-def]
    labels = ", ".join(f"{label}={version}" for label, version in sorted(state.labels.items())) or "none"
    share = f", canary share {state.canary_share:.0%}" if state.canary is not None else ""
    console.print(f"{name}: {labels}{share}", highlight=False)


@models_app.command("list")
def models_list(
    name: Annotated[str | None, typer.Option(help="Only this model.")] = None, registry: RegistryOption = None
) -> None:
    """Versions with creation time, classes, key metrics, gate result and state."""
    from imgclf.monitoring.report import format_value

    store = _registry(registry)
    table = Table("model", "version", "created", "classes", "accuracy", "macro F1", "gate", "state", "labels")
    broken = []
    for model in [name] if name else store.models():
        store.state(model)  # a clear error for an unknown name
        for version in store.versions(model):
            info = store.info(model, version)
            gate = (info.gate or "-") + (" forced" if info.overrides else "")
            f1 = info.metrics.get("macro_f1", info.gate_metrics.get("macro_f1"))
            table.add_row(
                model, str(version), (info.created_at or "")[:10], str(len(info.classes)),
                format_value(info.accuracy, 3), format_value(f1, 3), gate, info.state, ",".join(info.labels),
            )  # fmt: skip
            if not info.files.complete:
                broken.append(f"{model} version {version} cannot serve: {info.files.reason}")
    (console if console.is_terminal else Console(width=max(console.width, 140))).print(table)  # piped: never cut
    for line in broken:
        console.print(line, highlight=False, markup=False)


@models_app.command("show")
def models_show(
    name: ModelNameArgument,
    version: VersionArgument,
    registry: RegistryOption = None,
) -> None:
    """The version's model card (JSON), with its labels and gate result."""
    import json
    from dataclasses import asdict

    store = _registry(registry)
    info = store.info(name, version)
    print(json.dumps({**store.card(name, version), "registry": {**asdict(info), "state": info.state}}, indent=2))


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
    store = _registry(registry)
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
    result = run_gate(_registry(registry), name, version, data, thresholds)
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
    _print_state(name, _registry(registry).rollback(name))


@models_app.command("unlabel")
def models_unlabel(
    name: ModelNameArgument,
    label: Annotated[str, typer.Argument(help="The label to remove (canary ends the canary; stable is refused).")],
    registry: RegistryOption = None,
) -> None:
    """Remove a version label; stable stays (roll back or promote another version instead)."""
    _print_state(name, _registry(registry).unlabel(name, label))


@models_app.command("policy")
def models_policy(
    name: ModelNameArgument,
    policy: Annotated[
        str, typer.Argument(help="promoted: exports wait for promotion (default); latest: each export becomes stable.")
    ],
    registry: RegistryOption = None,
) -> None:
    """Choose whether new exports wait for promotion or serve at once (TF Serving's latest)."""
    state = _registry(registry).set_policy(name, policy)
    console.print(f"{name}: policy {state.policy}", highlight=False)


@models_app.command("label")
def models_label(
    name: ModelNameArgument,
    version: VersionArgument,
    label: Annotated[str, typer.Argument(help="Label ([A-Za-z0-9_]+).")],
    registry: RegistryOption = None,
) -> None:
    """Attach a version label (TF Serving's version_labels); requests may ask for it by name."""
    _print_state(name, _registry(registry).label(name, version, label))


@models_app.command("delete")
def models_delete(
    name: ModelNameArgument,
    version: VersionArgument,
    registry: RegistryOption = None,
) -> None:
    """Delete a version (refused while a label points at it)."""
    _registry(registry).delete(name, version)
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
        console.print(f"Keeping {out} current with {_registry(registry).root} every {watch:g} s (Ctrl+C stops)")
        watch_tfserving_config(_registry(registry), out, base_path_prefix, interval=watch)
        return
    for path in write_tfserving_config(_registry(registry), out, base_path_prefix):
        console.print(f"Wrote {path}")
    console.print(
        "Run: tensorflow_model_server --model_config_file=models.config --batching_parameters_file=batching.config "
        "--enable_batching --monitoring_config_file=monitoring.config --model_config_file_poll_wait_seconds=5 "
        "--rest_api_port=8501 --port=8500",
        highlight=False,
    )


# ---------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map exceptions to one line and an exit code."""
    from imgclf.errors import ImgclfError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [arg for arg in args if arg != "--debug"]  # accepted anywhere on the line
    try:
        app(args=args, prog_name="imgclf", standalone_mode=True)
    except ImgclfError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:  # an unexpected failure: still one line unless --debug
        if debug:
            raise
        first_line = (str(exc).strip().splitlines() or [""])[0]
        print(
            f"error: unexpected {type(exc).__name__}: {first_line} (rerun with --debug for details)",
            file=sys.stderr,
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
