"""The recipe ``imgclf tune`` searches: which training options, over which ranges.

Options the user fixed (given on the command line or in the base config) are left out of the
search. The first trial is always the data-aware default recipe (``imgclf.modeling.defaults``), so
the search never ends worse than plain ``imgclf train`` on the validation split.

Example:

>>> space = SearchSpace.for_config(base, ladder=[224, 256, 288])
>>> updates = space.sample(trial)  # {"image_size": 288, "learning_rate": 0.0012, ...}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import optuna

from imgclf.config import AugmentationConfig, TrainConfig

# Each searched option: (kind, low/choices, high). Learning rates are searched on a log scale.
RANGES: dict[str, tuple[str, Any, Any]] = {
    "learning_rate": ("log", 3e-4, 3e-3),
    "fine_tune_learning_rate": ("log", 1e-5, 3e-4),
    "epochs": ("int", 3, 10),
    "fine_tune_epochs": ("int", 2, 8),
    "fine_tune_fraction": ("choice", (0.3, 0.6, 1.0), None),
    "augmentation_strength": ("float", 0.0, 2.0),  # scales the default rotation, zoom, shift and contrast
    "label_smoothing": ("float", 0.0, 0.2),
    "dropout": ("float", 0.0, 0.5),
}
FINE_TUNING_OPTIONS = ("fine_tune_learning_rate", "fine_tune_epochs", "fine_tune_fraction")
AUGMENTATION_FACTORS = ("rotation", "zoom", "translation", "contrast")


@dataclass
class SearchSpace:
    """The options searched for one base config (image sizes from the backbone's ladder)."""

    options: dict[str, tuple[str, Any, Any]] = field(default_factory=dict)

    @classmethod
    def for_config(cls, base: TrainConfig, fixed: set[str], ladder: list[int]) -> SearchSpace:
        options = {name: spec for name, spec in RANGES.items() if name not in fixed}
        if not base.pretrained:
            for name in FINE_TUNING_OPTIONS:
                options.pop(name, None)
        if "augmentation" in fixed or not base.augmentation.enabled:
            options.pop("augmentation_strength", None)
        if "image_size" not in fixed and len(ladder) > 1:
            options["image_size"] = ("choice", tuple(ladder), None)
        return cls(options)

    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """The trial's values of every searched option."""
        values: dict[str, Any] = {}
        for name, (kind, low, high) in self.options.items():
            if kind == "log":
                values[name] = trial.suggest_float(name, low, high, log=True)
            elif kind == "float":
                values[name] = trial.suggest_float(name, low, high)
            elif kind == "int":
                values[name] = trial.suggest_int(name, low, high)
            else:
                values[name] = trial.suggest_categorical(name, list(low))
        return values

    def defaults(self, recipe: TrainConfig) -> dict[str, Any]:
        """The data-aware default recipe's values, as a trial's parameters (the first trial)."""
        values: dict[str, Any] = {}
        for name, (kind, low, high) in self.options.items():
            value = 1.0 if name == "augmentation_strength" else getattr(recipe, name)
            if kind == "choice" and value not in low:
                continue  # e.g. a default outside the choices: let the sampler pick
            if kind != "choice":
                value = min(max(value, low), high)
            values[name] = value
        return values


def apply(base: TrainConfig, values: dict[str, Any]) -> TrainConfig:
    """``base`` with a trial's values (``augmentation_strength`` scales the default augmentation)."""
    updates = {name: value for name, value in values.items() if name != "augmentation_strength"}
    if "augmentation_strength" in values:
        strength = values["augmentation_strength"]
        defaults = AugmentationConfig()
        scaled = {name: min(getattr(defaults, name) * strength, 0.9) for name in AUGMENTATION_FACTORS}
        if base.augmentation.contrast == 0:  # a data-aware choice (grayscale inputs) stays
            scaled["contrast"] = 0.0
        updates["augmentation"] = base.augmentation.model_copy(update=scaled)
    return base.model_copy(update=updates)
