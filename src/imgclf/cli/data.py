"""``imgclf data check`` and ``imgclf data split``."""

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

data_app = typer.Typer(help="Check and split datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    path: Annotated[
        Path, typer.Argument(help="Class-per-folder tree (with or without split folders) or CSV manifest.")
    ],
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Also write the full report as JSON here ('-': print it instead).")
    ] = None,
    min_side: Annotated[int, typer.Option(help="Images with a shorter side are reported as tiny.")] = 32,
    fail_on: Annotated[
        str | None,
        typer.Option(help="Exit 1 when any of these checks finds something, e.g. conflicts,leakage,unusable (for CI)."),
    ] = None,
) -> None:
    """Report corrupt files, wrong extensions, duplicates, leakage, imbalance and odd images."""
    from imgclf.data.sources import load_dataset

    dataset = load_dataset(path)  # a wrong path answers before the image libraries load
    from imgclf.data.checks import check_dataset

    report = check_dataset(dataset, min_side=min_side)
    failures = report.failures(fail_on.split(",")) if fail_on else {}  # an unknown name fails before output
    if json_out == Path("-"):
        print(json.dumps(report.to_dict(), indent=2))
    else:
        _print_check(report)
        if json_out is not None:
            from imgclf.run_dir import write_json

            write_json(json_out, report.to_dict())
            console.print(
                f"JSON report: {json_out}  (leave its flagged files out: imgclf train ... --exclude {json_out})"
            )
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if failures:
        found = ", ".join(f"{name} {count}" for name, count in failures.items())
        print(f"data check failed: {found}", file=sys.stderr)
        raise typer.Exit(1)


def _print_check(report) -> None:  # type: ignore[no-untyped-def]
    splits = list(report.counts)
    counts = table("class", *splits, title=f"{report.root} ({report.kind})", right=tuple(splits))
    for name in report.classes:
        counts.add_row(name, *[str(report.counts[s].get(name, 0)) for s in splits])
    console.print(counts)
    console.print(f"imbalance ratio (largest/smallest class): {report.imbalance_ratio}")
    problems = table("check", "found", "examples", title="checks", right=("found",))
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
    exclude: Annotated[
        Path | None, typer.Option(help="A `data check --json` report: leave out the files it flags.")
    ] = None,
) -> None:
    """Deterministic stratified split; near-duplicates stay in the same split. Existing split folders are ignored."""
    from imgclf.data.checks import load_flagged_files
    from imgclf.data.prepare import usable_samples
    from imgclf.data.sources import Dataset, load_dataset, write_manifest
    from imgclf.data.splits import assign_splits, split_summary

    dataset = load_dataset(path)
    if exclude is not None:
        flagged = set(load_flagged_files(exclude))
        kept = [s for s in dataset.samples if s.path not in flagged]
        console.print(f"{len(dataset.samples) - len(kept)} file(s) left out as flagged by {exclude}")
        dataset = Dataset(dataset.root, dataset.kind, kept)
    samples, infos, skipped = usable_samples(dataset)
    assigned = assign_splits(samples, infos, val, test, seed)
    write_manifest(assigned, out)
    rows = table("split", "images", title=f"split written to {out}", right=("images",))
    for split, per_class in split_summary(assigned).items():
        rows.add_row(split, str(sum(per_class.values())))
    console.print(rows)
    if skipped:
        console.print(f"{len(skipped)} unusable file(s) left out (see `imgclf data check`)")
