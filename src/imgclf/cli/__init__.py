"""The ``imgclf`` command line. Thin: parse options, call a library function, print.

One module per command group (``data``, ``training``, ``serve``, ``gateway``, ``monitor``,
``models``, ``retrain``), all on the Typer app of ``imgclf.cli.base``. Errors the user can act on
(``imgclf.errors.ImgclfError``) print one line and exit 2; anything unexpected prints one line and
exits 1. ``--debug`` (anywhere on the line) shows tracebacks, ``--verbose`` TensorFlow's own logging
(hidden otherwise: ``imgclf.cli.quiet``). Heavy imports (TensorFlow) happen inside commands, after
their arguments are checked, so ``imgclf --help`` and argument errors answer at once.
"""

from __future__ import annotations

import sys

from imgclf.cli import batch, data, gateway, models, monitor, retrain, serve, training, tune  # noqa: F401  (they register their commands)
from imgclf.cli.base import app, console
from imgclf.cli.quiet import silence_tensorflow_startup

__all__ = ["app", "console", "main"]


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app and map exceptions to one line and an exit code."""
    from imgclf.errors import ImgclfError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    verbose = debug or "--verbose" in args
    args = [arg for arg in args if arg not in ("--debug", "--verbose")]  # accepted anywhere on the line
    if not verbose:
        silence_tensorflow_startup()
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
