"""``imgclf tune``: search the training recipe within a time budget, then train the final model."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgclf.cli.base import app, console
from imgclf.config import TrainConfig

TRAIN = TrainConfig.model_fields


@app.command()
def tune(
    ctx: typer.Context,
    data: Annotated[list[Path], typer.Argument(help="Dataset folder(s) or CSV manifest(s), as for `imgclf train`.")],
    out: Annotated[Path, typer.Option("--out", help="Search directory: study, trials, leaderboard, final model.")],
    budget: Annotated[str, typer.Option(help="Time for the search: seconds, or 90s, 30m, 1.5h.")] = "30m",
    trials: Annotated[
        int | None, typer.Option(help="Stop after this many trials (default: the budget decides).")
    ] = None,
    model: Annotated[str, typer.Option(help="Architecture, as for `imgclf train`.")] = TRAIN["model"].default,
    alpha: Annotated[float | None, typer.Option(help="Width multiplier (MobileNet family).")] = None,
    weights: Annotated[
        str, typer.Option(help="imagenet (needs internet), none, or a local no-top weights file.")
    ] = TRAIN["weights"].default,
    image_size: Annotated[int | None, typer.Option(help="Fix the image size (default: searched).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Fix the head epochs (default: searched).")] = None,
    fine_tune_epochs: Annotated[
        int | None, typer.Option(help="Fix the fine-tuning epochs (default: searched).")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size per replica.")] = TRAIN["batch_size"].default,
    seed: Annotated[int, typer.Option(help="Seed of the sampler and of every trial's training.")] = TRAIN[
        "seed"
    ].default,
    final: Annotated[
        bool, typer.Option("--final/--no-final", help="Train the final model with the best recipe.")
    ] = True,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted search in --out.")] = False,
) -> None:
    """Search image size, learning rates, epochs, fine-tuned share, augmentation, smoothing and dropout.

    Each trial trains on the training split and is judged on the validation split; bad trials are
    stopped early. Writes leaderboard.csv/png and best_config.json (for `imgclf train --config`).
    """
    from imgclf import api
    from imgclf.tuning.budget import parse_duration

    budget_s = parse_duration(budget)
    options = {
        name: str(value) if isinstance(value, Path) else value
        for name, value in ctx.params.items()
        if name in TRAIN
        and name not in ("data", "out")
        and ctx.get_parameter_source(name) is not None
        and ctx.get_parameter_source(name).name == "COMMANDLINE"
    }
    result = api.tune(data, out=out, budget_s=budget_s, max_trials=trials, resume=resume, final=final,
                      report=console.print, **options)  # fmt: skip
    console.print(f"Leaderboard: {result.out / 'leaderboard.csv'}", highlight=False)
    if result.final_run is not None:
        console.print(
            f"Next:\n  imgclf evaluate {result.final_run.path}\n"
            f"  imgclf export {result.final_run.path} --registry REGISTRY",
            highlight=False,
        )
    elif result.best_config is not None:
        console.print(f"Next:\n  imgclf train --config {result.best_config} --out RUN", highlight=False)
