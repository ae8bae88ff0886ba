"""The output directory of a batch job: whole part files, what a resumed job skips, the summary.

``OUT/``::

    _job.json              the model (name, version, classes) and format the parts were written with
    part-00000.parquet     results, rows in the order they finished (``.jsonl`` or ``.csv`` likewise)
    part-00001.parquet
    _summary.json          written last: counts, errors by reason, accuracy and per-class figures

The driver writes the parts: each is written under a temporary name, flushed to disk and renamed, so
a job killed at any moment leaves only whole parts (and perhaps a ``.tmp`` file, removed on resume).
Files whose names start with ``_`` or ``.`` are skipped by pyarrow, pandas and Spark when they read
the directory as a dataset. A resumed job counts how often each path occurs in the parts and skips
that many of its occurrences in SOURCE (a manifest may list a file twice: each row is one input), so
the final output holds each input exactly once.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from imgclf.errors import ConfigError

FORMATS = ("parquet", "jsonl", "csv")
JOB_FILE = "_job.json"
SUMMARY_FILE = "_summary.json"


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ConfigError(f"invalid --format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def part_files(out: Path, fmt: str) -> list[Path]:
    return sorted(out.glob(f"part-*.{fmt}"))


class PartWriter:
    """Writes result tables to ``OUT/part-NNNNN.<fmt>``, one whole file at a time."""

    def __init__(self, out: Path, fmt: str, rows_per_file: int) -> None:
        self.out, self.fmt, self.rows_per_file = out, fmt, rows_per_file
        existing = [int(p.name.split(".")[0].removeprefix("part-")) for p in part_files(out, fmt)]
        self._next = max(existing, default=-1) + 1
        self._pending: list[pa.Table] = []
        self._rows = 0

    def add(self, table: pa.Table) -> None:
        self._pending.append(table)
        self._rows += table.num_rows
        if self._rows >= self.rows_per_file:
            self.flush()

    def flush(self) -> None:
        if not self._rows:
            return
        table = pa.concat_tables(self._pending)
        target = self.out / f"part-{self._next:05d}.{self.fmt}"
        temporary = self.out / f".{target.name}.tmp"
        with temporary.open("wb") as handle:
            _write(table, handle, self.fmt)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
        self._next += 1
        self._pending, self._rows = [], 0


def _write(table: pa.Table, handle: Any, fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        pq.write_table(table, handle)
    elif fmt == "jsonl":
        text = "".join(json.dumps(_json_row(row)) + "\n" for row in table.to_pylist())
        handle.write(text.encode("utf-8"))
    else:
        text = io.StringIO(newline="")
        writer = csv.writer(text)
        writer.writerow(table.column_names)
        writer.writerows([["" if value is None else value for value in row.values()] for row in table.to_pylist()])
        handle.write(text.getvalue().encode("utf-8"))


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}


def read_parts(out: Path, fmt: str, columns: list[str]) -> Iterator[dict[str, Any]]:
    """``columns`` of every row in the parts, one part in memory at a time (resume and the summary)."""
    for part in part_files(out, fmt):
        if fmt == "parquet":
            import pyarrow.parquet as pq

            present = [c for c in columns if c in pq.read_schema(part).names]
            yield from pq.read_table(part, columns=present).to_pylist()
        elif fmt == "jsonl":
            with part.open(encoding="utf-8") as handle:
                yield from ({c: record.get(c) for c in columns} for record in map(json.loads, handle))
        else:
            with part.open(newline="", encoding="utf-8") as handle:
                yield from ({c: record.get(c) for c in columns} for record in csv.DictReader(handle))


def prepare(out: Path, fmt: str, job: dict[str, Any], resume: bool) -> Counter[str]:
    """Make ``out`` ready; for a resumed job, how many times each path is already done."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; batch results go to a directory")
    out.mkdir(parents=True, exist_ok=True)
    job_file = out / JOB_FILE
    parts = [p for f in FORMATS for p in part_files(out, f)]
    if parts and not resume:
        raise ConfigError(
            f"{out} already holds {len(parts)} result file(s): add --resume to finish that job, or use another --out"
        )
    done: Counter[str] = Counter()
    if job_file.is_file():
        previous = json.loads(job_file.read_text(encoding="utf-8"))
        for key in ("model", "version", "format"):
            if resume and parts and previous.get(key) != job.get(key):
                raise ConfigError(
                    f"{out} was written with {key} {previous.get(key)!r}, this job has {job.get(key)!r}: "
                    "resume it with the same model and format, or use another --out"
                )
    for leftover in out.glob(".part-*.tmp"):  # a part being written when the job was killed
        leftover.unlink()
    (out / SUMMARY_FILE).unlink(missing_ok=True)
    if resume:
        done.update(row["path"] for row in read_parts(out, fmt, ["path"]))
    temporary = out / f".{JOB_FILE}.tmp"
    temporary.write_text(json.dumps(job, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, job_file)
    return done


def summarize(out: Path, fmt: str, classes: list[str]) -> dict[str, Any]:
    """Counts, errors by reason and (for labelled input) accuracy and per-class figures, over every part."""
    images, errors = 0, Counter[str]()
    support, hits, predicted = Counter[str](), Counter[str](), Counter[str]()
    for row in read_parts(out, fmt, ["label", "error", "true_label"]):
        images += 1
        if row["error"]:
            errors[row["error"].split(":", 1)[0]] += 1
        elif row.get("true_label"):
            support[row["true_label"]] += 1
            predicted[row["label"]] += 1
            hits[row["label"]] += row["label"] == row["true_label"]
    summary: dict[str, Any] = {
        "images": images,
        "classified": images - errors.total(),
        "errors": errors.total(),
        "errors_by_reason": dict(sorted(errors.items())),
    }
    if support:
        summary["labelled"] = support.total()
        summary["accuracy"] = hits.total() / support.total()
        summary["per_class"] = {
            name: {
                "support": support[name],
                "recall": hits[name] / support[name] if support[name] else None,
                "precision": hits[name] / predicted[name] if predicted[name] else None,
            }
            for name in sorted({*classes, *support})
        }
    return summary


def write_summary(out: Path, summary: dict[str, Any]) -> Path:
    target = out / SUMMARY_FILE
    temporary = out / f".{SUMMARY_FILE}.tmp"
    temporary.write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    os.replace(temporary, target)
    return target
