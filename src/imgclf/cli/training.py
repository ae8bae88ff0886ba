"""``imgclf train``, ``evaluate``, ``export``, ``predict`` and ``demo``: thin layers over ``imgclf.api``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from imgclf.cli.base import (
    app,
    console,
    table,
)
from imgclf.config import AugmentationConfig, TrainConfig

# Option defaults are TrainConfig's own (one place for each).
TRAIN = TrainConfig.model_fields
AUGMENT = AugmentationConfig.model_fields


# CLI option -> TrainConfig field (options not listed are named like their field).
_FIELD_OF = {"resize": "resize_mode", "patience": "early_stopping_patience"}
_AUGMENTATION_OF = {"augment": "enabled", "flip": "flip", "rotation": "rotation", "zoom": "zoom",
                    "translation": "translation", "contrast": "contrast"}  # fmt: skip


@app.command()
def train(
    ctx: typer.Context,
    data: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Dataset folder or CSV manifest; several are merged, later ones overriding labels of the same image."
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory to create (or resume).")] = None,
    config_file: Annotated[
        Path | None,
        typer.Option(
            "--config",
            help="Start from a config file (a run's config.json, or `imgclf tune`'s best_config.json); "
            "options given here override it.",
        ),
    ] = None,
    model: Annotated[
        str, typer.Option(help="small_cnn, mobilenet_v2, mobilenet, efficientnet_b0 or resnet50.")
    ] = TRAIN["model"].default,
    alpha: Annotated[float | None, typer.Option(help="Width multiplier (MobileNet family).")] = None,
    weights: Annotated[
        str, typer.Option(help="imagenet (needs internet), none, or a local no-top weights file.")
    ] = TRAIN["weights"].default,
    image_size: Annotated[
        int | None, typer.Option(help="Square input size in pixels (default: chosen from the images' sizes).")
    ] = None,
    resize: Annotated[str, typer.Option(help="stretch, crop or pad.")] = TRAIN["resize_mode"].default,
    epochs: Annotated[
        int | None,
        typer.Option(help="Epochs (head phase for pretrained backbones; default: chosen from the dataset's size)."),
    ] = None,
    fine_tune_epochs: Annotated[
        int | None, typer.Option(help="Fine-tuning epochs (default: chosen from the dataset's size; 0 to skip).")
    ] = None,
    fine_tune_fraction: Annotated[
        float, typer.Option(help="Top fraction of backbone layers to fine-tune (1: all of it).")
    ] = TRAIN["fine_tune_fraction"].default,
    batch_size: Annotated[int, typer.Option(help="Batch size per replica.")] = TRAIN["batch_size"].default,
    learning_rate: Annotated[float | None, typer.Option("--lr", help="Learning rate (default 1e-3).")] = None,
    val_fraction: Annotated[float, typer.Option(help="Validation share when the data has no val split.")] = TRAIN[
        "val_fraction"
    ].default,
    class_weights: Annotated[str, typer.Option(help="auto, balanced or none.")] = TRAIN["class_weights"].default,
    label_smoothing: Annotated[
        float, typer.Option(help="Soften the targets: 0.1 trains towards 0.9 for the class (0: off).")
    ] = TRAIN["label_smoothing"].default,
    dropout: Annotated[float, typer.Option(help="Dropout before the scores layer.")] = TRAIN["dropout"].default,
    patience: Annotated[int, typer.Option(help="Early-stopping patience in epochs.")] = TRAIN[
        "early_stopping_patience"
    ].default,
    augment: Annotated[
        bool, typer.Option("--augment/--no-augment", help="Random flips, rotation, zoom, shifts, contrast.")
    ] = AUGMENT["enabled"].default,
    flip: Annotated[str, typer.Option(help="horizontal, vertical, horizontal_and_vertical or none.")] = AUGMENT[
        "flip"
    ].default,
    rotation: Annotated[float, typer.Option(help="Max rotation, fraction of a full turn.")] = AUGMENT[
        "rotation"
    ].default,
    zoom: Annotated[float, typer.Option(help="Max zoom, fraction of the size.")] = AUGMENT["zoom"].default,
    translation: Annotated[float, typer.Option(help="Max shift, fraction of the size.")] = AUGMENT[
        "translation"
    ].default,
    contrast: Annotated[float, typer.Option(help="Max contrast change factor.")] = AUGMENT["contrast"].default,
    mixed_precision: Annotated[
        bool, typer.Option("--mixed-precision", help="float16 compute, float32 outputs (GPU).")
    ] = TRAIN["mixed_precision"].default,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Cache decoded images in memory.")] = TRAIN[
        "cache"
    ].default,
    seed: Annotated[int, typer.Option(help="Random seed.")] = TRAIN["seed"].default,
    exclude: Annotated[
        Path | None, typer.Option(help="A `data check --json` report: leave out the files it flags.")
    ] = None,
    keep_best: Annotated[
        bool,
        typer.Option(
            "--keep-best", help="Keep the linear probe on frozen features when it beats the fine-tuned model."
        ),
    ] = TRAIN["keep_best"].default,
    calibrate: Annotated[
        bool,
        typer.Option(
            "--calibrate/--no-calibrate",
            help="Fit a temperature on the validation split and fold it into the scores (accuracy unchanged).",
        ),
    ] = TRAIN["calibrate"].default,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue the interrupted run in --out (with its saved config)."),
    ] = False,
) -> None:
    """Train a classifier; every run directory keeps its config, labels, history, curves and best checkpoint.

    Only options given on the command line are passed on, so `--resume` can refuse the ones that
    contradict the run's saved config.
    """
    from pydantic import ValidationError

    from imgclf import api
    from imgclf.config import TrainConfig
    from imgclf.errors import ConfigError

    options: dict = TrainConfig.read_options(config_file) if config_file is not None else {}
    augmentation: dict = {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)  # Typer's own copy of click's ParameterSource: compare by name
        if name in ("data", "out", "resume", "config_file") or source is None or source.name != "COMMANDLINE":
            continue
        if name in _AUGMENTATION_OF:
            augmentation[_AUGMENTATION_OF[name]] = value
        else:
            options[_FIELD_OF.get(name, name)] = str(value) if isinstance(value, Path) else value
    if augmentation:
        options["augmentation"] = {**options.get("augmentation", {}), **augmentation}
    if data:
        sources = [str(path) for path in data]
        options["data"] = sources[0] if len(sources) == 1 else sources
    if out is not None:
        options["out"] = str(out)
    for needed, how in (("data", "DATA"), ("out", "--out")):
        if needed not in options:
            raise ConfigError(
                f"missing {how}: give it on the command line" + (" or in --config" if config_file else "")
            )
    try:
        config = TrainConfig(**options)
    except ValidationError as exc:
        raise ConfigError(_first_validation_error(exc)) from None
    run = api.train(config.sources, out=config.out, config=config, resume=resume, report=console.print)
    console.print(
        f"Next:\n  imgclf evaluate {run.path}\n  imgclf export {run.path} --registry REGISTRY", highlight=False
    )


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
    tflite: Annotated[
        list[str] | None,
        typer.Option(
            help="Instead: convert the model to these LiteRT variants (int8, float16, dynamic, float32; repeat or "
            "list) and compare them with the float model side by side (accuracy, agreement, ECE, size, latency)."
        ),
    ] = None,
    representative_images: Annotated[
        int, typer.Option(help="With --tflite int8: training images (seeded draw) that calibrate it.")
    ] = 200,
) -> None:
    """Per-class metrics, confusion matrix, ROC/PR, calibration and a decision threshold (binary)."""
    from imgclf import api

    if tflite:
        from imgclf.contract import check_tflite_variants

        variants = check_tflite_variants(tflite, "--tflite")  # before TensorFlow loads
        result = api.evaluate_tflite(run_dir, variants, data, split, representative_images)
        _print_side_by_side(result["rows"], f"{result['data']} ({result['num_examples']} images)")
        for variant, reason in result["failed"].items():
            console.print(f"[red]LiteRT {variant} failed[/red]: {reason}", highlight=False)
        console.print(f"Results: {Path(run_dir) / 'eval' / 'litert.json'}", highlight=False)
        if result["failed"]:
            raise typer.Exit(2)
        return
    metrics = api.evaluate(run_dir, data, split, target_precision, target_recall)
    numbers = ("precision", "recall", "f1", "support")
    rows = table(
        "class", *numbers, title=f"evaluation on {metrics['data']} ({metrics['num_examples']} images)", right=numbers
    )
    for name, row in metrics["per_class"].items():
        rows.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    console.print(rows)
    headline = ", ".join(
        f"{key} {metrics[key]:.4f}"
        for key in ("accuracy", "macro_f1", "roc_auc", "log_loss", "expected_calibration_error")
        if metrics.get(key) is not None
    )
    console.print(headline)
    if "baseline" in metrics:
        probe, tuned = metrics["baseline"]["linear_probe"], metrics["baseline"]["fine_tuned"]
        kept = " (kept: --keep-best)" if metrics["baseline"]["kept"] == "linear_probe" else ""
        console.print(
            f"baseline: linear probe on frozen features {probe['accuracy']:.4f}, "
            f"fine-tuned {tuned['accuracy']:.4f}{kept}"
        )
    if "threshold" in metrics:
        t = metrics["threshold"]
        console.print(
            f"threshold for {t['positive_class']}: {t['threshold']:.4f} ({t['objective']}; "
            f"precision {t['precision']:.3f}, recall {t['recall']:.3f})"
        )
    console.print(f"Results: {Path(run_dir) / 'eval'}", highlight=False)
    console.print(f"Next:\n  imgclf export {run_dir} --registry REGISTRY", highlight=False)


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
    tta: Annotated[
        str,
        typer.Option(
            help="Test-time augmentation in every signature: none, flip (2 views: scores averaged with the "
            "mirror image) or flip+crops (12 views: 5 crops and the image, each mirrored). Costs as many model runs."
        ),
    ] = "none",
    tflite: Annotated[
        list[str] | None,
        typer.Option(
            help="Also write a LiteRT (TFLite) variant beside the SavedModel: int8 (full-integer, calibrated on "
            "training images), float16, dynamic (int8 weights) or float32. Repeat it or give a list (int8,float16); "
            "the first is model.tflite (TF Serving's --prefer_tflite_model), the others model.VARIANT.tflite."
        ),
    ] = None,
    representative_images: Annotated[
        int, typer.Option(help="Training images (seeded draw) that calibrate the int8 variant.")
    ] = 200,
) -> None:
    """Write a versioned SavedModel that takes encoded image bytes (TF Serving can load it).

    The first version of a model becomes stable; later versions are candidates until promoted.
    """
    from imgclf import api
    from imgclf.contract import check_tflite_variants, check_tta
    from imgclf.errors import ConfigError
    from imgclf.registry.store import Registry

    check_tta(tta, "--tta")  # before TensorFlow loads
    variants = check_tflite_variants(tflite or [], "--tflite")
    if representative_images < 1:
        raise ConfigError(f"invalid --representative-images {representative_images}: at least 1")
    path = api.export(
        run_dir,
        registry=registry,
        name=name,
        reference_data=reference_data,
        tta=tta,
        tflite=variants,
        representative_images=representative_images,
    )
    console.print(f"Exported {path}", highlight=False)
    if variants:
        _print_litert_card(path)
    if tta != "none":
        console.print(f"Test-time augmentation {tta}: every signature averages the scores over its views.")
    model, version = path.parent.name, int(path.name)
    state = Registry(path.parent.parent).state(model)
    if state.stable == version:
        why = "the model's policy is latest" if len(state.history) > 1 else "the model's first version"
        console.print(f"{model} version {version} is stable ({why}).", highlight=False)
        registry_dir = path.parent.parent
        console.print(
            f"Next:\n  imgclf predict {path} IMAGE_OR_FOLDER\n"
            f"  imgclf gateway --registry {registry_dir} --model {model}",
            highlight=False,
        )
    else:
        console.print(
            f"{model} version {version} is a candidate: stable version {state.stable} keeps serving. Next:\n"
            f"  imgclf models gate {model} {version} --data EVAL_DATA\n"
            f"  imgclf models promote {model} {version} --to canary --share 0.1",
            highlight=False,
        )


def _print_litert_card(version_dir: Path) -> None:
    """The export's LiteRT variants as the model card records them (size, quantization, measured metrics)."""
    from imgclf.contract import read_model_card

    litert = read_model_card(version_dir).get("litert", {})
    measured = litert.get("measured_on", {})
    rows = table(
        "variant", "file", "bytes", "accuracy", "agreement", "ECE", "input quantization",
        title=f"LiteRT variants, measured on {measured.get('data')} ({measured.get('num_examples')} images)",
        right=("bytes", "accuracy", "agreement", "ECE"),
    )  # fmt: skip
    float_metrics = measured.get("float", {})
    rows.add_row("float (TensorFlow)", "saved_model.pb", "", _number(float_metrics.get("accuracy")), "1.0000",
                 _number(float_metrics.get("expected_calibration_error")), "")  # fmt: skip
    for variant, entry in litert.get("variants", {}).items():
        metrics, quantization = entry.get("metrics", {}), entry.get("input", {}).get("quantization")
        shown = f"scale {quantization['scale']:.6g}, zero point {quantization['zero_point']}" if quantization else ""
        rows.add_row(variant, entry["file"], str(entry["bytes"]), _number(metrics.get("accuracy")),
                     _number(metrics.get("agreement_with_float")), _number(metrics.get("expected_calibration_error")),
                     shown)  # fmt: skip
    console.print(rows)


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _print_side_by_side(rows: list[dict], data: str) -> None:
    """The float model and its LiteRT variants, one row each (``imgclf.export.litert.compare``)."""
    numbers = ("accuracy", "agreement", "ECE", "MB", "p50 b1 ms", "p50 b32 ms")
    shown = table("model", *numbers, title=f"float vs LiteRT on {data}", right=numbers)
    for row in rows:
        size = "" if row.get("bytes") is None else f"{row['bytes'] / 1e6:.2f}"
        latency = [f"{row.get(f'latency_ms_p50_batch{b}', 0):.2f}" for b in (1, 32)]
        shown.add_row(row["model"], _number(row["accuracy"]), _number(row["agreement_with_float"]),
                      _number(row["expected_calibration_error"]), size, *latency)  # fmt: skip
    console.print(shown)


@app.command()
def predict(
    model_dir: Annotated[
        Path, typer.Argument(help="Export version directory, or a model directory (the version serving).")
    ],
    images: Annotated[list[str], typer.Argument(help="Image files, folders (searched recursively) or globs.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON lines.")] = False,
    tflite: Annotated[
        str | None,
        typer.Option(
            help="Classify with the export's LiteRT variant (int8, float16, dynamic, float32) and compare it with "
            "the SavedModel side by side on these files (accuracy and ECE when folders are named by class)."
        ),
    ] = None,
) -> None:
    """Classify image files with an exported model."""
    from imgclf import api
    from imgclf.data.sources import expand_paths

    if tflite is not None:
        from imgclf.contract import check_tflite_variants

        tflite = check_tflite_variants([tflite], "--tflite")[0]
    files = expand_paths(images)  # before the model loads: a wrong path answers at once
    model = api.load(model_dir, tflite=tflite)  # a registry model: the version its traffic gets
    results = model.classify_files(files)
    for result in results:
        if as_json:
            print(json.dumps(result.to_dict()))
        elif result.error:
            console.print(f"{result.path}: [red]error[/red] {result.error}")
        else:
            top = sorted(result.scores.items(), key=lambda kv: -kv[1])[:3]
            shown = "  ".join(f"{label} {score:.3f}" for label, score in top)
            console.print(f"{result.path}: [bold]{result.label}[/bold] ({result.confidence:.3f})  {shown}")
    if tflite is not None and any(not r.error for r in results):
        rows = model.compare_tflite([r.path for r in results if not r.error], tflite)
        if as_json:
            print(json.dumps({"litert_comparison": rows}), file=sys.stderr)
        else:
            _print_side_by_side(rows, f"these {rows[0]['num_examples']} images")
    failed = sum(1 for r in results if r.error)
    if failed:
        print(f"error: {failed} of {len(results)} file(s) could not be classified", file=sys.stderr)
        raise typer.Exit(2)


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
