"""``imgclf retrain`` (once, from cron, or ``--watch``) and ``imgclf models judge``: thin layers over
``imgclf.retraining``."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from imgclf.cli.base import ModelNameArgument, RegistryOption, app, console, gateway_settings
from imgclf.cli.models import models_app

EXIT_NOT_BLESSED = 3
EXIT_ROLLED_BACK = 3


def _log(line: str) -> None:
    print(f"{datetime.now(UTC).isoformat(timespec='seconds')} {line}", flush=True)


@app.command()
def retrain(
    name: Annotated[str, typer.Option("--name", help="Model name in the registry.")],
    registry: RegistryOption = None,
    data: Annotated[
        Path | None, typer.Option(help="Original data instead of the files stable was trained on (its run manifest).")
    ] = None,
    min_new_reviews: Annotated[
        int, typer.Option(help="Do nothing unless this many reviews arrived since stable was exported.")
    ] = 0,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what it would train and evaluate on, then stop.")
    ] = False,
    canary_share: Annotated[float, typer.Option(help="Traffic share of a blessed new version (canary).")] = 0.1,
    gate_config: Annotated[
        Path | None, typer.Option(help='Gate thresholds, JSON {"thresholds": [...]} (default: built-in).')
    ] = None,
    work: Annotated[Path, typer.Option(help="Where training runs and manifests go.")] = Path("retrain_runs"),
    watch: Annotated[bool, typer.Option("--watch", help="Keep running: retrain whenever a trigger holds.")] = False,
    on_drift: Annotated[bool, typer.Option("--on-drift", help="With --watch: drift on stable triggers a run.")] = False,
    every: Annotated[str | None, typer.Option(help="With --watch: also retrain on this schedule (24h, 7d).")] = None,
    min_interval: Annotated[str, typer.Option(help="With --watch: at least this long between runs.")] = "1h",
    check_every: Annotated[float, typer.Option(help="With --watch: seconds between checks.")] = 60.0,
) -> None:
    """Train a new version from stable's data plus reviewed images, gate it against stable on a fixed
    evaluation set (validation split + held-out audit reviews), and make it the canary if blessed.

    Exits 3 when the gate refuses the new version (stable keeps serving). Safe from cron: one run
    per model at a time.
    """
    from imgclf.monitoring.jobs import parse_duration
    from imgclf.registry.gate import DEFAULT_THRESHOLDS, load_thresholds
    from imgclf.registry.store import Registry
    from imgclf.retraining.retrain import new_reviews
    from imgclf.retraining.retrain import retrain as run_retrain
    from imgclf.retraining.reviewed import reviewed_images
    from imgclf.retraining.watch import Triggers, due, retrain_lock
    from imgclf.storage.database import connect
    from imgclf.storage.image_store import ImageStore

    settings = gateway_settings(**({"registry": registry} if registry else {}))
    store = Registry(settings.registry)
    store.state(name)  # a clear error for an unknown model
    engine = connect(settings.database_url)
    images = ImageStore(settings.image_store_dir)

    def once(trigger: str) -> str:
        with retrain_lock(store.root / name):
            reviewed, missing = reviewed_images(engine, images)
            if missing:
                console.print(f"{missing} reviewed image(s) are no longer in the image store and are left out")
            result = run_retrain(
                store, name, reviewed, work=work, data=data, min_new_reviews=0 if watch else min_new_reviews,
                dry_run=dry_run, canary_share=canary_share, trigger=trigger, report=console.print,
                thresholds=load_thresholds(gate_config) if gate_config else DEFAULT_THRESHOLDS,
            )  # fmt: skip
            return result.outcome

    if not watch:
        if once("manual" if not min_new_reviews else f"reviews >= {min_new_reviews}") == "not_blessed":
            raise typer.Exit(EXIT_NOT_BLESSED)
        return

    triggers = Triggers(
        min_new_reviews=min_new_reviews or None,
        drift=on_drift,
        every_seconds=parse_duration(every).total_seconds() if every else None,
        min_interval_seconds=parse_duration(min_interval).total_seconds(),
    )
    last_run: datetime | None = None
    while True:
        stable = store.state(name).stable
        reviewed, _ = reviewed_images(engine, images)
        fresh = new_reviews(reviewed, store.card(name, stable).get("created_at")) if stable else 0
        reason = due(triggers, fresh, on_drift and _drifted(settings, name, stable), last_run, datetime.now(UTC))
        if reason is None:
            _log(f"{name}: no retraining due ({fresh} new review(s) since version {stable})")
        else:
            _log(f"{name}: retraining ({reason})")
            last_run = datetime.now(UTC)
            try:
                _log(f"{name}: retraining finished: {once(reason)}")
            except Exception as error:  # one failed run must not stop the watcher
                _log(f"{name}: retraining failed: {error}")
        time.sleep(check_every)


def _drifted(settings, name: str, version: int | None) -> bool:  # type: ignore[no-untyped-def]
    from imgclf.errors import MonitoringError
    from imgclf.monitoring.drift import DriftThresholds
    from imgclf.monitoring.jobs import ProfileCache, drift_check
    from imgclf.storage.database import connect

    try:
        report, _, _ = drift_check(
            connect(settings.database_url), ProfileCache(settings.registry), name, version, None,
            settings.drift_window, DriftThresholds.from_settings(settings),
        )  # fmt: skip
    except MonitoringError as error:
        _log(f"{name}: drift not checked: {error}")
        return False
    return report.verdict == "drift"


@models_app.command("judge")
def models_judge(
    name: ModelNameArgument,
    registry: RegistryOption = None,
    metrics_url: Annotated[
        list[str] | None,
        typer.Option(help="The gateway's /metrics (repeat for several processes; default: IMGCLF_HOST:PORT)."),
    ] = None,
    metrics_key: Annotated[
        str | None, typer.Option(envvar="IMGCLF_METRICS_KEY", help="Key for /metrics when it requires one.")
    ] = None,
    min_predictions: Annotated[int, typer.Option(help="Canary predictions needed before any decision.")] = 200,
    watch: Annotated[bool, typer.Option("--watch", help="Keep judging until it promotes or rolls back.")] = False,
    check_every: Annotated[float, typer.Option(help="With --watch: seconds between checks.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the verdict as JSON.")] = False,
) -> None:
    """Compare the canary with stable on live traffic; promote it when every check passes with enough
    traffic, roll it back when any fails, otherwise wait. Exits 3 after a rollback."""
    from imgclf.registry.store import Registry
    from imgclf.retraining.judge import JudgePolicy, apply, judge
    from imgclf.storage.database import connect

    settings = gateway_settings(**({"registry": registry} if registry else {}))
    store = Registry(settings.registry)
    store.state(name)
    engine = connect(settings.database_url)
    urls = metrics_url or [f"http://{settings.host}:{settings.port}/metrics"]
    policy = JudgePolicy(min_predictions=min_predictions)
    while True:
        verdict = judge(store, name, engine, _metrics_text(urls, metrics_key), policy)
        apply(store, verdict)
        if as_json:
            print(json.dumps(verdict.to_dict()))
        else:
            _log(
                f"{name}: {verdict.outcome}" + (f" (canary version {verdict.canary.version})" if verdict.canary else "")
            )
            for check in verdict.checks:
                console.print(f"  {check.status:>4}  {check.message}", highlight=False)
        if not watch or verdict.outcome != "wait":
            break
        time.sleep(check_every)
    if verdict.outcome == "rollback":
        raise typer.Exit(EXIT_ROLLED_BACK)


def _metrics_text(urls: list[str], key: str | None) -> str | None:
    """The gateways' /metrics, concatenated (the judge sums counters); None if one cannot be read."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    texts = []
    for url in urls:
        try:
            response = httpx.get(url, timeout=5, headers=headers)
            response.raise_for_status()
        except httpx.HTTPError as error:
            _log(f"cannot read {url}: {error}")
            return None
        texts.append(response.text)
    return "\n".join(texts)
