"""``imgclf gateway``, ``imgclf keys`` and ``imgclf reviews``."""

from __future__ import annotations

import datetime
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

keys_app = typer.Typer(help="Create, list and revoke the gateway's API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
reviews_app = typer.Typer(help="Work with the gateway's review queue.", no_args_is_help=True)
app.add_typer(reviews_app, name="reviews")


@app.command()
def gateway(
    registry: Annotated[
        Path | None, typer.Option(help="Model registry (default IMGCLF_REGISTRY or ./registry).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="Model name in the registry (default: its only model).")] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="local (in-process), http://HOST:8501 or grpc://HOST:8500 (imgclf serve or TF Serving), "
            "v2+http://HOST:PORT or v2+grpc://HOST:PORT (Open Inference Protocol: imgclf serve, Triton, KServe, "
            "MLServer)."
        ),
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
    settings = gateway_settings(**{k: v for k, v in overrides.items() if v is not None})
    if not settings.registry.is_dir():
        from imgclf.errors import ConfigError

        raise ConfigError(f"registry {settings.registry} is not a directory (use --registry)")
    run_gateway(settings, announce=lambda url: print(_listening(url), flush=True))


def _listening(url: str) -> str:
    return (
        f"Gateway listening on {url}\n  predict: POST {url}/v1/predict  (Authorization: Bearer KEY)\n"
        f"  docs:    {url}/docs\n  health:  {url}/readyz   metrics: {url}/metrics"
    )


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="Who or what uses the key.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: predict, review, admin.")] = "predict",
) -> None:
    """Create an API key and print it once (only its hash is stored). Database: IMGCLF_DATABASE_URL."""
    from imgclf.gateway.api_keys import create_key

    created = create_key(gateway_database(), name, scopes)
    console.print(f"Created key {created.info.prefix} ({created.info.name}; scopes {','.join(created.info.scopes)})")
    console.print("Store it now, it is not shown again:")
    print(created.secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (prefix, name, scopes, created, revoked)."""
    from imgclf.gateway.api_keys import list_keys

    rows = table("prefix", "name", "scopes", "created", "revoked")
    for key in list_keys(gateway_database()):
        revoked = key.revoked_at.strftime("%Y-%m-%d %H:%M") if key.revoked_at else ""
        rows.add_row(key.prefix, key.name, ",".join(key.scopes), key.created_at.strftime("%Y-%m-%d %H:%M"), revoked)
    console.print(rows)


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(help="The key's prefix (ik_xxxxxxxx) or id.")]) -> None:
    """Revoke an API key; requests with it get 401 from then on."""
    from imgclf.gateway.api_keys import revoke_key

    console.print(f"Revoked {revoke_key(gateway_database(), key).prefix}")


# ---------------------------------------------------------------- reviews


@reviews_app.command("export")
def reviews_export(
    out: Annotated[Path, typer.Option(help="CSV manifest to write (path,label), for imgclf train.")],
    since: Annotated[
        datetime.datetime | None, typer.Option(help="Only reviews made at or after this time (UTC).")
    ] = None,
) -> None:
    """Write reviewed images and their labels as a CSV manifest that imgclf train accepts."""
    from imgclf.retraining.reviewed import export_reviews
    from imgclf.storage.image_store import ImageStore

    settings = gateway_settings()
    summary = export_reviews(gateway_database(), ImageStore(settings.image_store_dir), out, since)
    console.print(
        f"Wrote {summary.rows} reviewed image(s) in {len(summary.labels)} class(es) to {out}"
        + (f"; {summary.missing_images} image(s) no longer in the store were skipped" if summary.missing_images else "")
    )
