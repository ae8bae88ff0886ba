"""Running a LiteRT (TFLite) model with ``ai-edge-litert``'s interpreter (XNNPACK on CPU).

One class, ``LiteRTModel``, for everything that runs an export's ``.tflite`` variants: the model
server (``--prefer-tflite-model``), ``imgclf predict --tflite``, ``imgclf.load(..., tflite=...)`` and
the side-by-side comparisons of ``imgclf evaluate --tflite``.

* Callers pass and get float32: an int8 model's input is quantized with its own scale and zero
  point (``q = round(x / scale) + zero_point``, clipped to int8) and its int8 output dequantized
  (``(q - zero_point) * scale``), as the model card's ``litert`` entry documents for edge callers.
* A batch of N runs as chunks whose sizes are powers of two (17 = 16 + 1), each on an interpreter
  resized once to that size and kept, so batches of any size reuse a handful of allocated
  interpreters instead of re-planning XNNPACK for every new size. An interpreter is not
  thread-safe: each runs one chunk at a time (a lock per chunk size).

Example:
    >>> model = LiteRTModel(Path("registry/cats_dogs/3/model.tflite"))
    >>> model.run(normalized_pixels).shape      # float32 [N, size, size, 3] → float32 [N, classes]
    (4, 2)
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2

from imgclf.contract import (
    CLASSIFY_INPUTS,
    CLASSIFY_OUTPUT_CLASSES,
    CLASSIFY_OUTPUT_SCORES,
    CLASSIFY_SIGNATURE,
    INPUT_BYTES,
    LITERT_DECIDE_SIGNATURE,
    LITERT_DECODE_SIGNATURE,
    LITERT_EXAMPLES_SIGNATURE,
    LITERT_INPUT,
    LITERT_IO_DIR,
    LITERT_SERVED_SIGNATURES,
    OUTPUT_CLASS_IDS,
    OUTPUT_INPUT_STATISTICS,
    OUTPUT_LABELS,
    OUTPUT_SCORES,
    TFLITE_FILE,
)
from imgclf.errors import ExportError, ServingError
from imgclf.serving.servable import (
    DEFAULT_SIGNATURE,
    ServableVersion,
    read_signature_defs,
    signatures_of,
)
from imgclf.serving.status import from_tensorflow

MAX_CHUNK = 64  # larger batches run as several chunks of 64 (and smaller powers of two)


class LiteRTModel:
    def __init__(self, path: str | Path, num_threads: int | None = None) -> None:
        self.path = Path(path)
        try:
            self.content = self.path.read_bytes()
        except OSError as error:
            raise ExportError(f"cannot read {self.path}: {error.strerror or error}") from None
        self.num_threads = num_threads or os.cpu_count() or 1
        self._interpreters: dict[int, tuple[Any, threading.Lock]] = {}
        self._guard = threading.Lock()
        first = self._interpreter(1)[0]  # a file the interpreter refuses fails here, before any traffic
        inputs, outputs = first.get_input_details(), first.get_output_details()
        if len(inputs) != 1 or len(outputs) != 1:
            raise ExportError(f"{self.path}: expected one input and one output, found {len(inputs)} and {len(outputs)}")
        self._input, self._output = inputs[0], outputs[0]
        self.input_shape = tuple(int(d) for d in self._input["shape_signature"])  # -1: any batch size
        self.input_dtype = np.dtype(self._input["dtype"])
        self.output_dtype = np.dtype(self._output["dtype"])
        self.input_quantization = _quantization(self._input)
        self.output_quantization = _quantization(self._output)

    @property
    def size_bytes(self) -> int:
        return len(self.content)

    def describe(self) -> dict[str, Any]:
        """Input and output types and quantization parameters (the model card's words)."""
        return {
            "input": {
                "dtype": self.input_dtype.name,
                "shape": list(self.input_shape),
                **_named(self.input_quantization),
            },
            "output": {"dtype": self.output_dtype.name, **_named(self.output_quantization)},
        }

    def run(self, inputs: np.ndarray) -> np.ndarray:
        """float32 inputs [N, ...] → float32 outputs [N, ...] (chunks of powers of two, see above)."""
        inputs = np.asarray(inputs, dtype=np.float32)
        expected = self.input_shape[1:]
        if inputs.ndim != len(self.input_shape) or tuple(inputs.shape[1:]) != expected:
            raise ValueError(f"{self.path.name} takes [N, {', '.join(map(str, expected))}], got {list(inputs.shape)}")
        results, start = [], 0
        while start < len(inputs):
            size = min(MAX_CHUNK, 1 << ((len(inputs) - start).bit_length() - 1))
            results.append(self._invoke(inputs[start : start + size]))
            start += size
        if not results:
            return np.zeros((0, *self._output["shape"][1:]), np.float32)
        return np.concatenate(results)

    def _invoke(self, chunk: np.ndarray) -> np.ndarray:
        interpreter, lock = self._interpreter(len(chunk))
        with lock:
            interpreter.set_tensor(self._input["index"], self._quantize(chunk))
            interpreter.invoke()
            raw = interpreter.get_tensor(self._output["index"])
        return self._dequantize(raw)

    def _quantize(self, values: np.ndarray) -> np.ndarray:
        if self.input_quantization is None:
            return values.astype(self.input_dtype, copy=False)
        scale, zero_point = self.input_quantization
        info = np.iinfo(self.input_dtype)
        return np.clip(np.round(values / scale) + zero_point, info.min, info.max).astype(self.input_dtype)

    def _dequantize(self, values: np.ndarray) -> np.ndarray:
        if self.output_quantization is None:
            return values.astype(np.float32, copy=True)
        scale, zero_point = self.output_quantization
        return ((values.astype(np.float32) - zero_point) * scale).astype(np.float32)

    def _interpreter(self, batch: int) -> tuple[Any, threading.Lock]:
        with self._guard:
            found = self._interpreters.get(batch)
            if found is not None:
                return found
            from ai_edge_litert.interpreter import Interpreter

            try:
                interpreter = Interpreter(model_content=self.content, num_threads=self.num_threads)
                detail = interpreter.get_input_details()[0]
                if batch != int(detail["shape"][0]):
                    interpreter.resize_tensor_input(detail["index"], [batch, *detail["shape"][1:]], strict=False)
                interpreter.allocate_tensors()
            except (ValueError, RuntimeError) as error:
                raise ExportError(f"LiteRT cannot load {self.path}: {str(error).strip().splitlines()[0]}") from None
            self._interpreters[batch] = (interpreter, threading.Lock())
            return self._interpreters[batch]


def _quantization(detail: dict[str, Any]) -> tuple[float, int] | None:
    scale, zero_point = detail.get("quantization", (0.0, 0))
    if not scale or np.dtype(detail["dtype"]).kind == "f":
        return None
    return float(scale), int(zero_point)


def _named(quantization: tuple[float, int] | None) -> dict[str, Any]:
    if quantization is None:
        return {"quantization": None}
    return {"quantization": {"scale": quantization[0], "zero_point": quantization[1]}}


class LiteRTServableVersion(ServableVersion):
    """A version answered by its ``model.tflite`` (``imgclf serve --prefer-tflite-model``).

    The same contract as the SavedModel: ``serving_default`` takes ``image_bytes`` and answers
    ``scores``, ``class_ids``, ``labels`` and ``input_statistics``; ``classify`` takes tf.Examples.
    Bytes become the ``.tflite``'s input through the export's ``assets.extra/litert_io`` SavedModel
    (its ``decode`` and ``decide`` signatures: the export's own preprocessing and threshold), so
    nothing here knows about preprocessing. Not answered: ``embedding_projection`` (the ``.tflite``
    has no embedding output), ``serving_features`` and ``serving_pixels``. Metadata is the
    SavedModel's SignatureDefs (read from ``saved_model.pb``, not loaded) less what is not answered.
    """

    runtime = "TFLite"

    def __init__(self, name: str, version: int, path: Path, io, signature_defs, model: LiteRTModel) -> None:  # type: ignore[no-untyped-def]
        self.name, self.version, self.path = name, version, path
        self._loaded = io
        self.model = model
        self.signature_defs = signature_defs
        self.signatures = signatures_of(signature_defs)

    @classmethod
    def load(cls, path: str | Path, name: str, version: int, num_threads: int | None = None) -> LiteRTServableVersion:  # type: ignore[override]
        path = Path(path)
        model = LiteRTModel(path / TFLITE_FILE, num_threads)
        io = tf.saved_model.load(str(path / LITERT_IO_DIR))
        for needed in (LITERT_DECODE_SIGNATURE, LITERT_EXAMPLES_SIGNATURE, LITERT_DECIDE_SIGNATURE):
            if needed not in io.signatures:
                raise ExportError(f"{path / LITERT_IO_DIR} has no {needed!r} signature")
        served = {}
        for key, definition in read_signature_defs(path).items():
            if key not in LITERT_SERVED_SIGNATURES:
                continue
            copy = meta_graph_pb2.SignatureDef()
            copy.CopyFrom(definition)
            for alias in list(copy.outputs):
                if alias not in _ANSWERED[key]:
                    del copy.outputs[alias]
            served[key] = copy
        if DEFAULT_SIGNATURE not in served:
            raise ExportError(f"{path} has no {DEFAULT_SIGNATURE!r} signature to serve from LiteRT")
        return cls(name, version, path, io, served, model)

    def run(self, signature_name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        key = signature_name or DEFAULT_SIGNATURE
        try:
            if key == DEFAULT_SIGNATURE:
                decoded = self._loaded.signatures[LITERT_DECODE_SIGNATURE](
                    **{INPUT_BYTES: tf.constant(inputs[INPUT_BYTES])}
                )
                scores = self.model.run(decoded[LITERT_INPUT].numpy())
                decided = self._loaded.signatures[LITERT_DECIDE_SIGNATURE](**{OUTPUT_SCORES: tf.constant(scores)})
                outputs = {OUTPUT_SCORES: scores, **{k: v.numpy() for k, v in decided.items()}}
                outputs[OUTPUT_INPUT_STATISTICS] = decoded[OUTPUT_INPUT_STATISTICS].numpy()
                return {alias: value for alias, value in outputs.items() if alias in self.signatures[key].outputs}
            if key == CLASSIFY_SIGNATURE:
                decoded = self._loaded.signatures[LITERT_EXAMPLES_SIGNATURE](
                    **{CLASSIFY_INPUTS: tf.constant(inputs[CLASSIFY_INPUTS])}
                )
                scores = self.model.run(decoded[LITERT_INPUT].numpy())
                labels = np.array([label.encode() for label in self.class_labels], dtype=object)
                return {
                    CLASSIFY_OUTPUT_CLASSES: np.broadcast_to(labels, scores.shape).copy(),
                    CLASSIFY_OUTPUT_SCORES: scores,
                }
        except tf.errors.OpError as error:
            raise from_tensorflow(error) from None
        except (TypeError, ValueError) as error:
            raise ServingError("INVALID_ARGUMENT", str(error).strip().splitlines()[0]) from None
        raise ServingError("FAILED_PRECONDITION", f'Serving signature key "{key}" not found.')


_ANSWERED = {
    DEFAULT_SIGNATURE: (OUTPUT_SCORES, OUTPUT_CLASS_IDS, OUTPUT_LABELS, OUTPUT_INPUT_STATISTICS),
    CLASSIFY_SIGNATURE: (CLASSIFY_OUTPUT_CLASSES, CLASSIFY_OUTPUT_SCORES),
}
