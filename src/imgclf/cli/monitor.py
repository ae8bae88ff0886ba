"""``imgclf monitor drift`` and ``imgclf monitor quality``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from imgclf.cli.base import (
    app,
    console,
    gateway_database,
    gateway_settings,
    table,
)

monitor_app = typer.Typer(help="Drift and prediction quality of the served model.", no_args_is_help=True)
app.add_typer(monitor_app, name="monitor")


def _monitored_model(registry: Path | None, model: str | None):  # type: ignore[no-untyped-def]
    from imgclf.errors import ConfigError
    from imgclf.gateway.runtime import resolve_model_name
    from imgclf.monitoring.jobs import ProfileCache

    settings = gateway_settings(**({"registry": registry} if registry else {}))
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
        gateway_database(), profiles, name, version, start, size, DriftThresholds.from_settings(settings)
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
    """Quality per version over time: needs-review rate, confidence, estimated, realized (uncertain-biased) and
    audited accuracy (a random sample of all traffic, with a 95% Wilson interval)."""

    from imgclf.monitoring.jobs import now_minus, parse_duration, quality_over_time
    from imgclf.monitoring.report import format_interval, format_value

    _, profiles, name = _monitored_model(registry, model)
    points = quality_over_time(
        gateway_database(), profiles, name, now_minus(parse_duration(since)), parse_duration(bucket)
    )
    rows = table(
        "version", "from", "predictions", "needs review", "mean conf.", "est. accuracy", "reviewed", "realized acc.",
        "audited", "audited acc. [95% CI]",
    )  # fmt: skip
    for point in points:
        q = point.quality
        rows.add_row(
            str(point.model_version), point.bucket_start, str(q.predictions), format_value(q.needs_review_rate, 3),
            format_value(q.mean_confidence, 3), format_value(q.estimated_accuracy, 3), str(q.reviewed),
            format_value(q.realized_accuracy, 3), str(q.audited),
            format_value(q.audited_accuracy, 3) + format_interval(q.audited_interval),
        )  # fmt: skip
    console.print(rows)
    if json_out:
        json_out.write_text(json.dumps([p.to_dict() for p in points], indent=2) + "\n", encoding="utf-8")
