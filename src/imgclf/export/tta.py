"""Test-time augmentation (TTA) inside the exported graph: ``imgclf export --tta``.

The views are made from the preprocessed pixel batch (decoded, resized, float32 in [0, 255]) inside
every signature, so TF Serving, ``imgclf serve``, the gateway, ``imgclf predict``, ``imgclf.load``
and anything else that calls the signatures answer the averaged scores without knowing TTA exists:

* ``none``: the image (1 view; the export is the one made without ``--tta``);
* ``flip``: the image and its horizontal mirror (2 views);
* ``flip+crops``: the image, its centre crop and its four corner crops, each a square of
  ``CROP_FRACTION`` of the side resized back (bilinear) to the input size, and the horizontal
  mirror of each of those six (12 views).

The views of a batch of N go through the model as one batch of V·N (view-major: all N images of
view 0, then of view 1, ...). The class probabilities (after the sigmoid or softmax) are averaged
over the views; class ids, labels and the binary threshold are applied to the averaged scores.
Embeddings are the identity view's (view 0): monitoring compares them with a reference profile
measured by the same export, and a mean of embeddings would not be any image's embedding.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from imgclf.contract import TTA_MODES, TTA_NONE

CROP_FRACTION = 0.875  # 224 of 256: the classic ten-crop evaluation's ratio
VIEW_COUNTS = {"none": 1, "flip": 2, "flip+crops": 12}  # keys: TTA_MODES


def view_count(mode: str) -> int:
    """How many views ``mode`` makes of each image."""
    return VIEW_COUNTS[mode]


def crop_boxes(size: int) -> list[tuple[int, int, int]]:
    """(top, left, side) of the centre and the four corner crops of a ``size`` square."""
    side = max(1, round(size * CROP_FRACTION))
    far, middle = size - side, (size - side) // 2
    return [(middle, middle, side), (0, 0, side), (0, far, side), (far, 0, side), (far, far, side)]


def make_views(pixels: tf.Tensor, mode: str) -> tf.Tensor:
    """Pixels [N, S, S, 3] → the views [V·N, S, S, 3], view-major; view 0 is ``pixels`` itself."""
    if mode == TTA_NONE:
        return pixels
    if mode not in VIEW_COUNTS:
        raise ValueError(f"tta must be one of {', '.join(TTA_MODES)}, got {mode!r}")
    bases = [pixels]
    if mode == "flip+crops":
        size = int(pixels.shape[1])
        for top, left, side in crop_boxes(size):
            crop = pixels[:, top : top + side, left : left + side, :]
            bases.append(tf.image.resize(crop, [size, size], method="bilinear"))
    views = []
    for base in bases:
        views += [base, tf.reverse(base, axis=[2])]  # axis 2: width (a horizontal mirror)
    return tf.concat(views, axis=0)


def mean_over_views(values: tf.Tensor, views: int) -> tf.Tensor:
    """[V·N, ...] (view-major) → the mean over the V views, [N, ...]."""
    if views == 1:
        return values
    shape = tf.shape(values)
    return tf.reduce_mean(tf.reshape(values, tf.concat([[views, shape[0] // views], shape[1:]], 0)), axis=0)


def first_view(values: tf.Tensor, views: int) -> tf.Tensor:
    """[V·N, ...] (view-major) → view 0's rows, [N, ...]."""
    if views == 1:
        return values
    return values[: tf.shape(values)[0] // views]


def describe(mode: str) -> dict[str, Any]:
    """The model card's ``tta`` entry."""
    entry: dict[str, Any] = {"mode": mode, "views": view_count(mode)}
    if mode != TTA_NONE:
        entry["averaged"] = "class probabilities over the views; class ids and labels decided on the mean"
        entry["decision"] = (
            "the threshold (binary) or argmax applies to the mean scores; a threshold from imgclf evaluate "
            "was chosen on the model's single-view scores"
        )
        entry["embedding"] = "the identity view's"
        entry["signatures"] = "every one (bytes, pixels, tf.Example): views made from the resized pixels in the graph"
    if mode == "flip":
        entry["description"] = "the image and its horizontal mirror"
    elif mode == "flip+crops":
        entry["description"] = (
            f"the image, its centre and four corner crops ({CROP_FRACTION:.1%} of the side, resized back, "
            "bilinear), and the horizontal mirror of each"
        )
    return entry
