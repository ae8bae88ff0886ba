"""Drift reports for people: a text table, JSON, and a self-contained HTML page with the
reference and current distributions side by side (PNG figures embedded).

Example:
    >>> write_html_report(report, profile, window, Path("drift.html"))
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from imgclf.monitoring.drift import DriftReport
from imgclf.monitoring.input_stats import STATISTICS
from imgclf.monitoring.profile import ReferenceProfile
from imgclf.monitoring.quality import QualitySummary
from imgclf.monitoring.window import Window


def format_value(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def report_lines(report: DriftReport) -> list[str]:
    """The report as aligned text lines: header, one line per test, quality."""
    lines = [
        f"{report.model_name} version {report.model_version}: {report.verdict.upper().replace('_', ' ')} "
        f"({report.window_size} predictions vs {report.reference_size} reference images)",
    ]
    if report.window_start:
        lines.append(f"window: {report.window_start} .. {report.window_end}")
    if report.tests:
        lines.append(f"{'test':<36} {'method':<19} {'statistic':>10} {'p-value':>10}  {'drift when':<22} drift")
    for t in report.tests:
        lines.append(
            f"{t.name:<36} {t.method:<19} {format_value(t.statistic):>10} {format_value(t.p_value):>10}  "
            f"{t.criterion:<22} {'YES' if t.drifted else 'no'}"
        )
    if report.quality is not None:
        lines.append(quality_line(report.quality))
    return lines


def format_interval(interval: tuple[float, float] | None) -> str:
    """`` [0.812, 0.903]`` (a 95 % interval), or nothing."""
    return "" if interval is None else f" [{interval[0]:.3f}, {interval[1]:.3f}]"


def quality_line(q: QualitySummary) -> str:
    return (
        f"quality: mean confidence {format_value(q.mean_confidence, 3)}, needs review "
        f"{format_value(q.needs_review_rate, 3)}, estimated accuracy {format_value(q.estimated_accuracy, 3)} "
        f"(reference {format_value(q.reference_accuracy, 3)}), reviewed {q.reviewed}, realized accuracy "
        f"{format_value(q.realized_accuracy, 3)} (uncertain-biased), audited {q.audited}, audited accuracy "
        f"{format_value(q.audited_accuracy, 3)}{format_interval(q.audited_interval)}"
    )


def write_json_report(report: DriftReport, path: Path) -> None:
    Path(path).write_text(json.dumps(report.to_dict(), indent=2) + "\n", encoding="utf-8")


def _png(figure) -> bytes:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def distribution_figures(profile: ReferenceProfile, window: Window) -> list[tuple[str, bytes]]:
    """The reference and current distributions side by side, as (title, PNG): predicted classes and
    confidence, the input statistics, embeddings (the HTML report's figures; the console shows them too)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = profile.window
    figures = []
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.2))
    positions = np.arange(len(reference.classes))
    left.bar(positions - 0.2, reference.class_counts / max(reference.size, 1), 0.4, label="reference")
    left.bar(positions + 0.2, window.class_counts / max(window.size, 1), 0.4, label="current")
    left.set_xticks(positions, reference.classes, rotation=30)
    left.set_title("predicted classes (share)")
    left.legend()
    bins = np.linspace(0, 1, 21)
    right.hist(reference.confidence, bins, density=True, alpha=0.5, label="reference")
    right.hist(window.confidence, bins, density=True, alpha=0.5, label="current")
    right.set_title("confidence")
    right.legend()
    figures.append(("Predictions", _png(fig)))

    fig, axes = plt.subplots(3, 4, figsize=(12, 7.5))
    for axis, name in zip(axes.ravel(), STATISTICS, strict=True):
        ref, cur = reference.statistics[name], window.statistics[name]
        both = np.concatenate([ref, cur])
        both = both[np.isfinite(both)]
        if len(both):
            edges = np.linspace(both.min(), both.max() + 1e-9, 25)
            axis.hist(ref, edges, density=True, alpha=0.5, label="reference")
            axis.hist(cur, edges, density=True, alpha=0.5, label="current")
        axis.set_title(name, fontsize=9)
        axis.tick_params(labelsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    figures.append(("Input statistics", _png(fig)))

    if (
        len(reference.embeddings) > 2
        and len(window.embeddings)
        and reference.embeddings.shape[1] == window.embeddings.shape[1]
    ):
        mean = reference.embeddings.mean(axis=0)
        _, _, components = np.linalg.svd(reference.embeddings - mean, full_matrices=False)
        ref2 = (reference.embeddings - mean) @ components[:2].T
        cur2 = (window.embeddings - mean) @ components[:2].T
        fig, axis = plt.subplots(figsize=(5, 4))
        axis.scatter(ref2[:, 0], ref2[:, 1], s=6, alpha=0.5, label="reference")
        axis.scatter(cur2[:, 0], cur2[:, 1], s=6, alpha=0.5, label="current")
        axis.set_title("embeddings (reference PCA, 2 components)")
        axis.legend()
        figures.append(("Embeddings", _png(fig)))
    return figures


def write_html_report(report: DriftReport, profile: ReferenceProfile, window: Window, path: Path) -> None:
    """One self-contained HTML file: verdict, tests, quality and the distributions side by side."""
    rows = "".join(
        f"<tr class={'drift' if t.drifted else 'ok'}><td>{html.escape(t.name)}</td><td>{t.method}</td>"
        f"<td>{format_value(t.statistic)}</td><td>{format_value(t.p_value)}</td><td>{html.escape(t.criterion)}</td>"
        f"<td>{'yes' if t.drifted else 'no'}</td></tr>"
        for t in report.tests
    )
    images = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' "
        f"src='data:image/png;base64,{base64.b64encode(data).decode()}'>"
        for title, data in distribution_figures(profile, window)
    )
    quality = html.escape(quality_line(report.quality)) if report.quality else ""
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Drift report: {html.escape(report.model_name)} v{report.model_version}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}} td:first-child{{text-align:left}}
tr.drift{{background:#fdd}} .verdict{{font-size:1.4em}}</style></head><body>
<h1>Drift report: {html.escape(report.model_name)} version {report.model_version}</h1>
<p class="verdict">Verdict: <b>{report.verdict.replace("_", " ")}</b> — {report.window_size} predictions
({html.escape(report.window_start or "")} .. {html.escape(report.window_end or "")}) against
{report.reference_size} reference images ({html.escape(profile.source)}).</p>
<table><tr><th>test</th><th>method</th><th>statistic</th><th>p-value</th><th>drift when</th><th>drift</th></tr>
{rows}</table>
<p>{quality}</p>{images}</body></html>
"""
    Path(path).write_text(page, encoding="utf-8")
