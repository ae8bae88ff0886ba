"""Typed configuration.

``TrainConfig`` is everything that defines one training run. The CLI builds it from flags,
training resolves it (model defaults filled in) and saves it as ``RUN_DIR/config.json``, so a run
can be resumed and reproduced from its own directory. ``GatewaySettings`` holds the gateway's
service settings, read from ``IMGCLF_*`` environment variables; it lives in ``imgclf.settings``
and is imported from here on first use (it needs pydantic-settings, whose import costs the command
line a fifth of a second). (The model server takes TF Serving's flags instead:
``imgclf.serving.options.ServerOptions``.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from imgclf.errors import ConfigError

if TYPE_CHECKING:
    from imgclf.settings import GatewaySettings as GatewaySettings

ModelName = Literal["small_cnn", "mobilenet_v2", "mobilenet", "efficientnet_b0", "resnet50"]
MODEL_NAMES: tuple[str, ...] = ModelName.__args__  # type: ignore[attr-defined]


class AugmentationConfig(BaseModel):
    """Random transforms applied to training batches only (Keras preprocessing layers).

    Factors follow the Keras layers: rotation is a fraction of a full turn, zoom and translation a
    fraction of the image size, contrast a factor range. 0 disables a transform.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    flip: Literal["horizontal", "vertical", "horizontal_and_vertical", "none"] = "horizontal"
    rotation: float = Field(0.05, ge=0, le=1)
    zoom: float = Field(0.1, ge=0, lt=1)
    translation: float = Field(0.1, ge=0, lt=1)
    contrast: float = Field(0.1, ge=0, lt=1)


class TrainConfig(BaseModel):
    """One training run. ``None`` fields are filled from the model's defaults by ``resolve``."""

    model_config = ConfigDict(extra="forbid")

    data: str | list[str]  # one source, or several merged in order (later ones override labels)
    out: str
    model: ModelName = "mobilenet_v2"
    alpha: float | None = None
    weights: str = "imagenet"  # "imagenet", "none" or a path to a local no-top weights file
    image_size: int | None = None  # None: chosen from the data (imgclf.modeling.defaults)
    resize_mode: Literal["stretch", "crop", "pad"] = "stretch"
    epochs: int | None = Field(None, ge=1)  # head phase; None: chosen from the dataset's size
    fine_tune_epochs: int | None = Field(None, ge=0)  # None: chosen from the dataset's size (0: no fine-tuning)
    fine_tune_fraction: float = Field(1.0, gt=0, le=1)  # 1: the whole backbone, as in Keras' transfer-learning guide
    batch_size: int = Field(32, ge=1)
    learning_rate: float | None = Field(None, gt=0)
    fine_tune_learning_rate: float | None = Field(None, gt=0)
    val_fraction: float = Field(0.2, gt=0, lt=1)
    class_weights: Literal["auto", "balanced", "none"] = "auto"
    dropout: float = Field(0.2, ge=0, lt=1)  # before the scores layer
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # targets (1 - s) for the class, s / k spread over all k
    early_stopping_patience: int = Field(4, ge=1)
    augmentation: AugmentationConfig = Field(default_factory=AugmentationConfig)
    mixed_precision: bool = False
    cache: bool = True
    seed: int = 42
    exclude: str | None = None  # a `data check --json` report whose flagged files are left out
    init_from: str | None = None  # warm start: a checkpoint (.keras) of the same architecture and classes
    keep_best: bool = False  # keep the linear probe when it beats the fine-tuned model on validation
    calibrate: bool = True  # fit a temperature on validation and fold it into the scores layer
    chosen: dict[str, str] = Field(default_factory=dict)  # written by training: option -> why it was picked

    @property
    def sources(self) -> list[str]:
        return [self.data] if isinstance(self.data, str) else list(self.data)

    @property
    def pretrained(self) -> bool:
        return self.model != "small_cnn" and self.weights.lower() != "none"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.model_dump(), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path) -> TrainConfig:
        return cls.model_validate_json(path.read_text(encoding="utf-8"))

    @staticmethod
    def read_options(path: Path) -> dict[str, Any]:
        """The options of a config file (a run's ``config.json``, ``imgclf tune``'s ``best_config.json``)
        to start a new run with: what training chose becomes given, and ``data``/``out`` may be absent."""
        try:
            options = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"cannot read config file {path}: {exc}") from None
        if not isinstance(options, dict):
            raise ConfigError(f"config file {path} does not hold a JSON object")
        options.pop("chosen", None)
        return options


def __getattr__(name: str) -> Any:
    """``imgclf.config.GatewaySettings``, imported on first use (PEP 562)."""
    if name == "GatewaySettings":
        from imgclf.settings import GatewaySettings

        return GatewaySettings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
