"""``imgclf predict-batch``: classify a folder, glob, manifest or URI prefix on Ray Data (``imgclf.batch``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from imgclf.cli.base import app, console


@app.command("predict-batch")
def predict_batch(
    source: Annotated[
        str, typer.Argument(help="A folder (recursive), a glob, a CSV manifest (path[,label]) or a URI (s3://…).")
    ],
    model: Annotated[str, typer.Option(help="REGISTRY/NAME (its serving version), REGISTRY/NAME/VERSION or @LABEL.")],
    out: Annotated[Path, typer.Option(help="Output directory: part files, _job.json, _summary.json.")],
    fmt: Annotated[str, typer.Option("--format", help="parquet, jsonl or csv.")] = "parquet",
    batch_size: Annotated[int, typer.Option(help="Images per call of the model's signature.")] = 32,
    concurrency: Annotated[
        int | None, typer.Option(help="Model actors (each loads the export once). Default: one per CPU.")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(envvar="RAY_ADDRESS", help="A Ray cluster (HOST:PORT or ray://…); default: embedded local Ray."),
    ] = None,
    resume: Annotated[bool, typer.Option(help="Finish a job OUT already holds: write only what is missing.")] = False,
    rows_per_file: Annotated[
        int, typer.Option(help="Rows per part file; a killed job loses at most the rows not yet in one.")
    ] = 10_000,
) -> None:
    """Classify many images on Ray Data: one row per input (scores, label, error), embedded or on a cluster."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from imgclf import api

    verbose = "--verbose" in sys.argv or "--debug" in sys.argv
    columns = (TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, disable=not console.is_terminal) as bar:
        task = bar.add_task("classifying", total=None)
        result = api.predict_batch(
            source, model=model, out=out, format=fmt, batch_size=batch_size, concurrency=concurrency,
            address=address, resume=resume, rows_per_file=rows_per_file, verbose=verbose,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    summary = result.summary
    if "accuracy" in summary:
        console.print(f"accuracy {summary['accuracy']:.4f} over {summary['labelled']} labelled images", highlight=False)
        for name, figures in summary["per_class"].items():
            recall, precision = figures["recall"], figures["precision"]
            console.print(
                f"  {name}: {figures['support']} images, recall {_share(recall)}, precision {_share(precision)}",
                highlight=False,
            )
    if summary["errors"]:
        reasons = ", ".join(f"{reason} {count}" for reason, count in summary["errors_by_reason"].items())
        console.print(f"errors: {reasons}", highlight=False)
    skipped = f" ({result.skipped} already done)" if result.skipped else ""
    console.print(
        f"{result.images} images{skipped}, {result.errors} errors, {result.images_per_s:.1f} images/s, "
        f"wall time {result.wall_s:.1f} s → {result.out}",
        highlight=False,
    )


def _share(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"
