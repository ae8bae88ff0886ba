"""The single decode → resize → normalize path.

Every image the project ever classifies goes through these functions: the training input
pipeline (``imgclf.data.pipeline``) calls them on file contents, and the exported SavedModel
(``imgclf.export``) bakes them into its ``serving_default`` signature, which takes encoded image
bytes. Nobody else re-implements preprocessing, so training and serving cannot drift apart.

Policy, in order:

1. **Decode** with ``tf.io.decode_image``: JPEG, PNG, GIF (first frame only), BMP, WebP.
   Any channel count becomes RGB: grayscale is repeated, an alpha channel is dropped (the colour
   under a transparent pixel is kept as stored), 16-bit PNGs are scaled to 8 bits.
   EXIF orientation is **ignored**: pixels are used in the order they are stored, in training and
   in serving alike (TensorFlow's decoders do not read EXIF). Clients that want rotated photos
   classified upright must rotate the pixels before encoding.
2. **Resize** to a square ``image_size`` with bilinear interpolation, without antialiasing (as
   Keras' ``image_dataset_from_directory``; resizing straight from uint8 is about 4x faster than
   an antialiased float resize, see benchmarks/RESULTS.md), by one of three modes: ``stretch``
   (default; the aspect ratio is not kept), ``crop`` (central square crop, then resize) or
   ``pad`` (letterbox with black bars). The result is float32 in [0, 255].
3. **Normalize** the way the backbone expects: ``symmetric`` ([-1, 1], MobileNet family),
   ``unit`` ([0, 1], the small CNN), ``caffe`` (BGR, ImageNet mean subtracted, ResNet50) or
   ``raw`` (unchanged 0–255; EfficientNet normalizes inside the network).

Example:

>>> spec = PreprocessingSpec(image_size=224, normalization="symmetric")
>>> pixels = decode_and_resize(tf.io.read_file("cat.jpg"), spec)   # float32 [224, 224, 3]
>>> model_input = normalize(pixels[None], spec.normalization)      # float32 [1, 224, 224, 3]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import tensorflow as tf

RESIZE_MODES = ("stretch", "crop", "pad")
NORMALIZATIONS = ("symmetric", "unit", "caffe", "raw")
# ImageNet channel means in BGR order, as keras.applications.imagenet_utils uses for "caffe".
_CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)


@dataclass(frozen=True)
class PreprocessingSpec:
    """Everything needed to turn encoded bytes into a model input; stored with each export."""

    image_size: int
    resize_mode: str = "stretch"
    normalization: str = "symmetric"

    def __post_init__(self) -> None:
        if self.resize_mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {self.resize_mode!r}")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PreprocessingSpec:
        return cls(**{k: values[k] for k in ("image_size", "resize_mode", "normalization")})


def decode_image(image_bytes: tf.Tensor) -> tf.Tensor:
    """Decode one encoded image (scalar tf.string) to uint8 RGB [height, width, 3]."""
    image = tf.io.decode_image(image_bytes, channels=3, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, image_size: int, resize_mode: str = "stretch") -> tf.Tensor:
    """Resize one [height, width, 3] image to float32 [image_size, image_size, 3] in [0, 255]."""
    size = [image_size, image_size]
    if resize_mode == "crop":
        shape = tf.shape(image)
        height, width = shape[0], shape[1]
        side = tf.minimum(height, width)
        top = (height - side) // 2
        left = (width - side) // 2
        image = tf.image.crop_to_bounding_box(image, top, left, side, side)
    elif resize_mode == "pad":
        return tf.image.resize_with_pad(tf.cast(image, tf.float32), image_size, image_size, method="bilinear")
    elif resize_mode != "stretch":
        raise ValueError(f"resize_mode must be one of {RESIZE_MODES}, got {resize_mode!r}")
    # Resizing the uint8 image directly (output float32) avoids a full-size float copy.
    return tf.image.resize(image, size, method="bilinear")


def decode_and_resize(image_bytes: tf.Tensor, spec: PreprocessingSpec) -> tf.Tensor:
    """Encoded bytes (scalar tf.string) → float32 [size, size, 3] pixels in [0, 255]."""
    return resize_image(decode_image(image_bytes), spec.image_size, spec.resize_mode)


def normalize(pixels: tf.Tensor, normalization: str) -> tf.Tensor:
    """Map float pixels in [0, 255] (any leading shape, RGB last) to the backbone's input range."""
    pixels = tf.cast(pixels, tf.float32)
    if normalization == "symmetric":
        return pixels / 127.5 - 1.0
    if normalization == "unit":
        return pixels / 255.0
    if normalization == "caffe":
        bgr = pixels[..., ::-1]
        return bgr - tf.constant(_CAFFE_BGR_MEAN, dtype=tf.float32)
    if normalization == "raw":
        return pixels
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")


def decode_and_resize_batch(image_bytes: tf.Tensor, spec: PreprocessingSpec) -> tuple[tf.Tensor, tf.Tensor]:
    """A batch of encoded images (tf.string [N]) → (float32 [N, size, size, 3] in [0, 255], int32 [N, 2]).

    The second tensor holds each image's decoded height and width (monitoring's input statistics
    record them; ``imgclf.export.input_statistics``).
    """
    size = spec.image_size

    def one(image_bytes: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        image = decode_image(image_bytes)
        return resize_image(image, size, spec.resize_mode), tf.shape(image)[:2]

    return tf.map_fn(
        one,
        image_bytes,
        fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32), tf.TensorSpec([2], tf.int32)),
        parallel_iterations=16,
    )


def preprocess_batch(image_bytes: tf.Tensor, spec: PreprocessingSpec) -> tf.Tensor:
    """A batch of encoded images (tf.string [N]) → normalized model input [N, size, size, 3]."""
    pixels, _ = decode_and_resize_batch(image_bytes, spec)
    return normalize(pixels, spec.normalization)
