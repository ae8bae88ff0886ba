"""Data-aware training defaults: what ``imgclf train`` picks for the options it was not given, and why.

Each rule reads the training split (image sizes, count, class balance, colour) and is written once,
here. Options given explicitly are never changed. The picks and their reasons are saved in the
run's ``config.json`` (``chosen``) and printed with the run's log.

- **Image size** (pretrained backbones): the largest size on the backbone's ladder (its native
  size, then steps of 32 px up to 9/7 of it: 224, 256, 288) that does not enlarge the median
  image's longer side by more than 15%, while the training set's pixel budget (images × (size /
  native)²) stays within ``PIXEL_BUDGET``. Small photos (longer side under ~200 px) stay at the
  native size; photos of 256 px and more get 288 px, where the backbone's last feature map is 9×9
  instead of 7×7 (flowers: 0.906 mean of three seeds at 288 against 0.89 at 224). Models trained
  from scratch keep their default size (larger inputs only cost time there).
- **Epochs**: ``ceil(16000 / training images)`` head epochs within [3, 20] and ``ceil(22000 /
  training images)`` fine-tuning epochs within [2, 12]: a similar number of optimisation steps
  whatever the dataset's size (2,934 flowers photos: 6 + 8, mean of three seeds 0.916 against
  0.907 with 6 + 4, whose validation loss was still falling at its last epoch); early stopping
  keeps the best epoch either way.
- **Class weights** (``auto``): balanced weights when the largest class has more than 1.5× the
  training images of the smallest.
- **Augmentation** (unless any augmentation option was given): flips, small rotation, zoom and
  shift for every dataset; the contrast change only for colour photos, since on grayscale inputs
  (≥ 90% of the training images without colour, e.g. inspection cameras) intensity is often what
  separates the classes.

Example:

>>> config, reasons = choose_defaults(resolve_config(config), prepared)
>>> reasons["image_size"]
'288 px: the median image is 256 px on its longer side (native 224 px; 2934 training images)'
"""

from __future__ import annotations

import math
from collections import Counter

from imgclf.config import TrainConfig
from imgclf.data.prepare import PreparedData
from imgclf.errors import ConfigError
from imgclf.modeling.architectures import backbone_spec, validate_model_options

SIZE_STEP = 32
LARGEST_SCALE = 9 / 7  # 224 -> 288
UPSCALE_TOLERANCE = 1.15  # the size may enlarge the median longer side by this much
PIXEL_BUDGET = 60_000  # training images x (size / native)^2
HEAD_STEPS_IMAGES, HEAD_EPOCHS_RANGE = 16_000, (3, 20)
FINE_TUNE_IMAGES, FINE_TUNE_EPOCHS_RANGE = 22_000, (2, 12)
IMBALANCE_LIMIT = 1.5  # class_weights="auto" balances above this ratio of largest to smallest class
GRAYSCALE_SHARE = 0.9


def size_ladder(config: TrainConfig) -> list[int]:
    """The sizes the backbone can take with these weights, from native up to ``LARGEST_SCALE`` × native."""
    native = backbone_spec(config.model).default_image_size
    sizes = []
    for size in range(native, int(native * LARGEST_SCALE) + 1, SIZE_STEP):
        try:
            validate_model_options(config.model, size, config.alpha, config.weights)
        except ConfigError:  # e.g. Keras' ImageNet download exists for 224 px and below only
            continue
        sizes.append(size)
    return sizes or [native]


def choose_image_size(config: TrainConfig, stats: dict[str, float], train_images: int) -> tuple[int, str]:
    """The image size rule (module docstring) and why it picked what it picked."""
    native = backbone_spec(config.model).default_image_size
    if not config.pretrained:
        return native, f"{native} px: the model's default (trained from scratch, larger inputs only cost time)"
    long_side = float(stats.get("median_long_side", 0.0))
    ladder = size_ladder(config)
    fits_images = [size for size in ladder if size <= long_side * UPSCALE_TOLERANCE]
    affordable = [size for size in fits_images if train_images * (size / native) ** 2 <= PIXEL_BUDGET]
    chosen = max([native, *affordable])
    why = (
        f"the median image is {long_side:.0f} px on its longer side "
        f"(native {native} px; {train_images} training images)"
    )
    if max(fits_images, default=native) > chosen:
        why += f"; larger sizes exceed the compute budget of {PIXEL_BUDGET:,} native-size images per epoch"
    return chosen, f"{chosen} px: {why}"


def _clamp(value: int, limits: tuple[int, int]) -> int:
    return max(limits[0], min(limits[1], value))


def choose_epochs(config: TrainConfig, train_images: int) -> tuple[int, int, str]:
    head = _clamp(math.ceil(HEAD_STEPS_IMAGES / max(train_images, 1)), HEAD_EPOCHS_RANGE)
    fine = _clamp(math.ceil(FINE_TUNE_IMAGES / max(train_images, 1)), FINE_TUNE_EPOCHS_RANGE)
    if not config.pretrained:
        return head, 0, f"{head} epochs for {train_images} training images (about {HEAD_STEPS_IMAGES:,} images seen)"
    return (
        head,
        fine,
        (
            f"{head} head + {fine} fine-tuning epochs for {train_images} training images "
            f"(about {HEAD_STEPS_IMAGES:,} and {FINE_TUNE_IMAGES:,} images seen)"
        ),
    )


def describe_class_weights(prepared: PreparedData, mode: str) -> str:
    counts = Counter(s.label for s in prepared.split("train"))
    largest, smallest = max(counts, key=counts.__getitem__), min(counts, key=counts.__getitem__)
    ratio = counts[largest] / counts[smallest]
    balance = (
        f"largest class {largest} has {ratio:.1f}x the images of the smallest, {smallest}"
        if ratio > 1
        else f"every class has {counts[largest]} training images"
    )
    if mode == "auto":
        return f"{'balanced' if ratio > IMBALANCE_LIMIT else 'none'} (auto): {balance}"
    return f"{mode} (given): {balance}"


def choose_augmentation(config: TrainConfig, stats: dict[str, float]) -> tuple[dict, str]:
    share = float(stats.get("grayscale_share", 0.0))
    if share >= GRAYSCALE_SHARE:
        return {"contrast": 0.0}, (
            f"flips, rotation, zoom and shift; no contrast change: {share:.0%} of the training images are grayscale"
        )
    return {}, f"flips, rotation, zoom, shift and contrast: colour photos ({share:.0%} grayscale)"


def choose_defaults(config: TrainConfig, prepared: PreparedData) -> tuple[TrainConfig, dict[str, str]]:
    """Fill the options left unset (``None``, or augmentation not given) from the data; say why."""
    train_images = len(prepared.split("train"))
    stats = prepared.image_stats
    updates: dict[str, object] = {}
    reasons: dict[str, str] = {}
    if config.image_size is None:
        updates["image_size"], reasons["image_size"] = choose_image_size(config, stats, train_images)
    head, fine, why = choose_epochs(config, train_images)
    if config.epochs is None:
        updates["epochs"] = head
        reasons["epochs"] = why
    if config.fine_tune_epochs is None:
        updates["fine_tune_epochs"] = fine if config.pretrained else 0
        reasons["fine_tune_epochs"] = why
    reasons["class_weights"] = describe_class_weights(prepared, config.class_weights)
    if "augmentation" not in config.model_fields_set and config.augmentation.enabled:
        changes, reasons["augmentation"] = choose_augmentation(config, stats)
        updates["augmentation"] = config.augmentation.model_copy(update=changes)
    chosen = config.model_copy(update={**updates, "chosen": reasons})
    if chosen.image_size is not None:
        validate_model_options(chosen.model, chosen.image_size, chosen.alpha, chosen.weights)
    return chosen, reasons
