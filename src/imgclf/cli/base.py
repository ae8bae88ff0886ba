"""What every command group shares: the Typer app, the console, settings and registry helpers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(
    name="imgclf",
    help="From a folder of labelled images to a production image classifier on TensorFlow.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
# On a terminal Rich fits its width; piped or redirected, lines are as long as their values (never cut
# at 80 columns), so tables and reports can be read by other programs and by grep.
console = Console() if sys.stdout.isatty() else Console(width=1_000_000)


def table(*headers: str, title: str | None = None, right: tuple[str, ...] = ()) -> Table:
    """A Rich table whose cells fold long values onto more lines instead of cutting them (``flowe…``)."""
    made = Table(title=title)
    for header in headers:
        made.add_column(header, overflow="fold", justify="right" if header in right else "left")
    return made


RegistryOption = Annotated[Path | None, typer.Option(help="Registry directory (default IMGCLF_REGISTRY).")]
ModelNameArgument = Annotated[str, typer.Argument(help="Model name.")]
VersionArgument = Annotated[int, typer.Argument(help="Version.")]


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors (implies --verbose).")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", help="Show TensorFlow's own log messages.")] = False,
) -> None:
    """imgclf: check data, train, evaluate, export and classify images."""


def gateway_settings(**overrides):  # type: ignore[no-untyped-def]
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


def gateway_database():  # type: ignore[no-untyped-def]
    from imgclf.storage.database import connect

    return connect(gateway_settings().database_url)


def registry_store(registry: Path | None):  # type: ignore[no-untyped-def]
    """The registry at ``registry``, or at IMGCLF_REGISTRY."""
    from imgclf.registry.store import Registry

    return Registry(registry or gateway_settings().registry)
