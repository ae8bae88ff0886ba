"""Model architectures: ImageNet backbones with a classification head, and a small CNN baseline.

Every model takes normalized pixels ``[N, size, size, 3]`` (see ``imgclf.preprocessing``) and
returns class scores: one sigmoid unit for two classes, softmax otherwise, always float32 (also
under mixed precision). Pretrained backbones are called with ``training=False`` so their
BatchNorm layers stay in inference mode, also when their top layers are fine-tuned.

Example:

>>> spec = BACKBONES["mobilenet_v2"]
>>> model = build_model("mobilenet_v2", num_classes=2, image_size=224, alpha=0.35,
...                     weights="../shared/weights/mobilenet_v2_0.35_224_no_top.weights.h5")
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import keras

from imgclf.config import MODEL_NAMES
from imgclf.errors import ConfigError

BASE_LAYER_NAME = "backbone"
EMBEDDING_LAYER_NAME = "embedding"
SCORES_LAYER_NAME = "scores"


@dataclass(frozen=True)
class BackboneSpec:
    """What the project needs to know about one architecture."""

    name: str
    normalization: str  # see imgclf.preprocessing.NORMALIZATIONS
    default_image_size: int
    min_image_size: int
    default_alpha: float | None = None
    imagenet_alphas: tuple[float, ...] = ()
    imagenet_sizes: tuple[int, ...] = ()  # empty: any size >= min_image_size
    factory: Callable[..., keras.Model] | None = None


def _mobilenet_v2(**kwargs) -> keras.Model:
    return keras.applications.MobileNetV2(**kwargs)


def _mobilenet(**kwargs) -> keras.Model:
    return keras.applications.MobileNet(**kwargs)


def _efficientnet_b0(alpha: float | None = None, **kwargs) -> keras.Model:
    return keras.applications.EfficientNetB0(**kwargs)


def _resnet50(alpha: float | None = None, **kwargs) -> keras.Model:
    return keras.applications.ResNet50(**kwargs)


BACKBONES: dict[str, BackboneSpec] = {
    "small_cnn": BackboneSpec("small_cnn", "unit", 128, 16),
    "mobilenet_v2": BackboneSpec(
        "mobilenet_v2",
        "symmetric",
        224,
        32,
        1.0,
        (0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
        (96, 128, 160, 192, 224),
        _mobilenet_v2,
    ),
    "mobilenet": BackboneSpec(
        "mobilenet",
        "symmetric",
        224,
        32,
        1.0,
        (0.25, 0.5, 0.75, 1.0),
        (128, 160, 192, 224),
        _mobilenet,
    ),
    "efficientnet_b0": BackboneSpec("efficientnet_b0", "raw", 224, 32, factory=_efficientnet_b0),
    "resnet50": BackboneSpec("resnet50", "caffe", 224, 32, factory=_resnet50),
}
assert set(BACKBONES) == set(MODEL_NAMES)


def backbone_spec(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        raise ConfigError(f"unknown model {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def validate_model_options(name: str, image_size: int, alpha: float | None, weights: str) -> None:
    """Raise ConfigError for combinations Keras would reject (or download nothing for)."""
    spec = backbone_spec(name)
    if image_size < spec.min_image_size:
        raise ConfigError(f"image size {image_size} is too small for {name} (minimum {spec.min_image_size})")
    if name == "small_cnn":
        if weights.lower() not in ("none", "imagenet"):
            raise ConfigError("small_cnn is trained from scratch; it takes no --weights file")
        if alpha is not None:
            raise ConfigError("--alpha applies to mobilenet and mobilenet_v2 only")
        return
    if alpha is not None and spec.default_alpha is None:
        raise ConfigError(f"--alpha applies to mobilenet and mobilenet_v2, not {name}")
    if weights.lower() == "imagenet":
        if spec.imagenet_alphas and alpha not in spec.imagenet_alphas:
            allowed = ", ".join(str(a) for a in spec.imagenet_alphas)
            raise ConfigError(f"ImageNet weights for {name} exist for alpha {allowed}, not {alpha}")
        if spec.imagenet_sizes and image_size not in spec.imagenet_sizes:
            allowed = ", ".join(str(s) for s in spec.imagenet_sizes)
            raise ConfigError(f"ImageNet weights for {name} exist for image sizes {allowed}, not {image_size}")
    elif weights.lower() != "none" and not Path(weights).expanduser().is_file():
        raise ConfigError(f"weights file not found: {weights}")


def _build_backbone(spec: BackboneSpec, image_size: int, alpha: float | None, weights: str) -> keras.Model:
    assert spec.factory is not None
    keras_weights = "imagenet" if weights.lower() == "imagenet" else None
    kwargs = {"include_top": False, "weights": keras_weights, "input_shape": (image_size, image_size, 3)}
    if spec.default_alpha is not None:
        kwargs["alpha"] = alpha if alpha is not None else spec.default_alpha
    try:
        base = spec.factory(**kwargs)
    except Exception as exc:  # download failure, or Keras rejecting the combination
        if keras_weights == "imagenet":
            raise ConfigError(
                f"could not get ImageNet weights for {spec.name} ({exc}); without internet pass "
                "--weights PATH to a local no-top weights file, or --weights none"
            ) from None
        raise ConfigError(f"cannot build {spec.name}: {exc}") from None
    if keras_weights is None and weights.lower() != "none":
        try:
            base.load_weights(str(Path(weights).expanduser()))
        except Exception as exc:
            raise ConfigError(f"weights file {weights} does not fit {spec.name} (alpha={alpha}): {exc}") from None
    base.name = BASE_LAYER_NAME
    return base


def build_model(
    name: str,
    num_classes: int,
    image_size: int,
    alpha: float | None = None,
    weights: str = "none",
    dropout: float = 0.2,
) -> keras.Model:
    """Build an uncompiled classifier. Pretrained backbones start frozen."""
    if num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, got {num_classes}")
    validate_model_options(name, image_size, alpha, weights)
    spec = backbone_spec(name)
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    if name == "small_cnn":
        # The tutorials' baseline: Conv32-Pool-Conv64-Pool-Dense128.
        x = keras.layers.Conv2D(32, 3, activation="relu")(inputs)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(64, 3, activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Flatten()(x)
        x = keras.layers.Dense(128, activation="relu", name=EMBEDDING_LAYER_NAME)(x)
        x = keras.layers.Dropout(0.5)(x)
    else:
        base = _build_backbone(spec, image_size, alpha, weights)
        base.trainable = weights.lower() == "none"
        x = base(inputs, training=False)
        x = keras.layers.GlobalAveragePooling2D(name=EMBEDDING_LAYER_NAME)(x)
        x = keras.layers.Dropout(dropout)(x)
    units, activation = (1, "sigmoid") if num_classes == 2 else (num_classes, "softmax")
    outputs = keras.layers.Dense(units, activation=activation, dtype="float32", name=SCORES_LAYER_NAME)(x)
    return keras.Model(inputs, outputs, name=f"imgclf_{name}")


def unfreeze_top_layers(model: keras.Model, fraction: float) -> int:
    """Make the top ``fraction`` of the backbone's layers trainable, BatchNorm excepted.

    Returns how many layers became trainable. BatchNorm statistics stay frozen (and the backbone
    is called with training=False), as Keras' transfer-learning guide recommends.
    """
    base = model.get_layer(BASE_LAYER_NAME)
    base.trainable = True
    first_trainable = int(len(base.layers) * (1 - fraction))
    count = 0
    for index, layer in enumerate(base.layers):
        trainable = index >= first_trainable and not isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = trainable
        count += int(trainable and bool(layer.weights))
    return count


def class_scores(outputs):  # type: ignore[no-untyped-def]
    """Model outputs → probabilities [N, classes]: a single sigmoid unit p becomes [1 − p, p].

    Works on NumPy arrays and TensorFlow tensors (also inside a traced serving function).
    """
    outputs = keras.ops.cast(outputs, "float32")
    if outputs.shape[-1] == 1:
        return keras.ops.concatenate([1.0 - outputs, outputs], axis=-1)
    return outputs
