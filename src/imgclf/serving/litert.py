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

from imgclf.errors import ExportError

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
