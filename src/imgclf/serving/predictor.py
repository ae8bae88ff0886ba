"""The request logic REST and gRPC share: address a version, validate, run (batched), measure.

Validation and messages follow TF Serving's ``predict_util.cc``, ``classifier.cc`` and
``regressor.cc``; the front ends only translate their wire formats to numpy and back.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
from tensorflow.core.example import example_pb2
from tensorflow_serving.apis import classification_pb2, inference_pb2, regression_pb2

from imgclf.errors import ConfigError, ServingError
from imgclf.serving.batching import BatchScheduler, Tensors
from imgclf.serving.json_tensors import dtype_name
from imgclf.serving.manager import ModelManager
from imgclf.serving.metrics import ServingMetrics
from imgclf.serving.options import BatchingParameters, ServerOptions, load_model_config
from imgclf.serving.servable import DEFAULT_SIGNATURE, ServableVersion, Signature

CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
PREDICT_METHOD = "tensorflow/serving/predict"
RUNTIME = "TF2"


@dataclass(frozen=True)
class ModelAddress:
    """Which model version a request is for: name plus an optional version or label."""

    name: str
    version: int | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if self.version is not None and self.label:
            raise ServingError(
                "INVALID_ARGUMENT",
                f"Both model version ({self.version}) and model version label ({self.label}) cannot be supplied.",
            )


def _join(names) -> str:  # type: ignore[no-untyped-def]
    return ",".join(sorted(names))


def check_inputs(signature: Signature, inputs: Tensors) -> Tensors:
    """Inputs named and typed as the signature wants (``PreProcessPrediction``)."""
    sent, expected = set(inputs), set(signature.inputs)
    if sent != expected:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"input size does not match signature: {len(sent)}!={len(expected)} len({{{_join(sent)}}}) != "
            f"len({{{_join(expected)}}}). Sent extra: {{{_join(sent - expected)}}}. "
            f"Missing but required: {{{_join(expected - sent)}}}.",
        )
    checked = {}
    for index, (alias, spec) in enumerate(sorted(signature.inputs.items())):
        value = inputs[alias]
        if spec.dtype == tf.string:
            if value.dtype != object:
                raise ServingError(
                    "INVALID_ARGUMENT", f"Expects arg[{index}] to be string but {_dtype_name(value)} is provided"
                )
        elif value.dtype != spec.dtype.as_numpy_dtype:
            if not np.can_cast(value.dtype, spec.dtype.as_numpy_dtype, casting="same_kind") or value.dtype == object:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"Expects arg[{index}] to be {dtype_name(spec.dtype)} but {_dtype_name(value)} is provided",
                )
            value = value.astype(spec.dtype.as_numpy_dtype)
        if spec.shape is not None and not _shape_matches(spec.shape, value.shape):
            wanted = "[" + ",".join("?" if d is None else str(d) for d in spec.shape) + "]"
            raise ServingError(
                "INVALID_ARGUMENT", f"input {alias} has shape {list(value.shape)}, the signature expects {wanted}"
            )
        checked[alias] = value
    return checked


def _shape_matches(wanted: tuple[int | None, ...], shape: tuple[int, ...]) -> bool:
    return len(wanted) == len(shape) and all(d is None or d == n for d, n in zip(wanted, shape, strict=True))


def _dtype_name(value: np.ndarray) -> str:
    return "string" if value.dtype == object else dtype_name(tf.dtypes.as_dtype(value.dtype))


class Predictor:
    """Runs requests against the manager's versions, through the batch scheduler when enabled."""

    def __init__(self, manager: ModelManager, metrics: ServingMetrics, scheduler: BatchScheduler | None) -> None:
        self.manager = manager
        self.metrics = metrics
        self.scheduler = scheduler
        self._executor = None if scheduler else ThreadPoolExecutor(32, thread_name_prefix="imgclf-run")

    def servable(self, address: ModelAddress) -> ServableVersion:
        return self.manager.servable(address.name, address.version, address.label)

    # ------------------------------------------------------------ predict

    def predict(
        self, servable: ServableVersion, signature_name: str, inputs: Tensors, output_filter: tuple[str, ...] = ()
    ) -> Future[Tensors]:
        signature = servable.signature(signature_name)
        for alias in output_filter:
            if alias not in signature.outputs:
                raise ServingError(
                    "INVALID_ARGUMENT",
                    f"output tensor alias not found in signature: {alias} Outputs expected to be in the set "
                    f"{{{_join(signature.outputs)}}}.",
                )
        inputs = check_inputs(signature, inputs)
        future = self._run(servable, signature.name, inputs)
        if not output_filter:
            return future
        return chain(future, lambda outputs: {alias: outputs[alias] for alias in output_filter})

    def _run(self, servable: ServableVersion, signature_name: str, inputs: Tensors) -> Future[Tensors]:
        def run(batch: Tensors) -> Tensors:
            started = time.perf_counter()
            outputs = servable.run(signature_name, batch)
            self.metrics.runtime_latency.labels(
                servable.name, "Predict", getattr(servable, "runtime", RUNTIME)
            ).observe((time.perf_counter() - started) * 1e6)
            return outputs

        if self.scheduler is not None:
            key = (servable.name, servable.version, signature_name, id(servable))
            return self.scheduler.submit(key, run, inputs, servable.name)
        assert self._executor is not None
        return self._executor.submit(run, inputs)

    def forget(self, name: str, version: int) -> None:
        """Drop batching queues of an unloaded version."""
        if self.scheduler is not None:
            self.scheduler.remove(lambda key: key[0] == name and key[1] == version)

    # ------------------------------------------------------------ classify / regress

    def classify(
        self, servable: ServableVersion, signature_name: str, examples: np.ndarray
    ) -> Future[classification_pb2.ClassificationResult]:
        """TF Serving's ``RunClassify`` with its default ``--enable_signature_method_name_check=false``:
        any signature shaped like a classification one (one ``inputs`` tensor; ``classes`` and/or
        ``scores``) is run, whatever its method name, as TF2 SavedModels save every signature as a
        predict one. imgclf exports name theirs ``classify`` (method ``tensorflow/serving/classify``)."""
        signature = _example_signature(servable, signature_name)
        if len(signature.inputs) != 1:
            raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
        if len(signature.outputs) not in (1, 2):
            raise ServingError(
                "INVALID_ARGUMENT", f"Expected one or two output Tensors, found {len(signature.outputs)}"
            )
        if "inputs" not in signature.inputs:
            raise ServingError("INVALID_ARGUMENT", f"No classification inputs found in SignatureDef: {signature.name}")
        if "classes" not in signature.outputs and "scores" not in signature.outputs:
            raise ServingError(
                "INVALID_ARGUMENT",
                'Expected classification signature outputs to contain at least one of "classes" or "scores". '
                f"Signature was: {signature.name}",
            )
        future = self._run(servable, signature.name, {"inputs": examples})
        return chain(future, lambda outputs: classification_result(outputs, len(examples)))

    def regress(
        self, servable: ServableVersion, signature_name: str, examples: np.ndarray
    ) -> Future[regression_pb2.RegressionResult]:
        signature = _example_signature(servable, signature_name)
        if len(signature.inputs) != 1:
            raise ServingError("INVALID_ARGUMENT", "Expected one input Tensor.")
        if len(signature.outputs) != 1:
            raise ServingError("INVALID_ARGUMENT", "Expected one output Tensor.")
        if "inputs" not in signature.inputs:
            raise ServingError("INVALID_ARGUMENT", f"No regression inputs found in SignatureDef: {signature.name}")
        if "outputs" not in signature.outputs:
            raise ServingError("INVALID_ARGUMENT", f"No regression outputs found in SignatureDef: {signature.name}")
        future = self._run(servable, signature.name, {"inputs": examples})
        return chain(future, lambda outputs: regression_result(outputs["outputs"], len(examples)))

    def multi_inference(
        self, servable: ServableVersion, tasks, examples: np.ndarray
    ) -> list[inference_pb2.InferenceResult]:  # type: ignore[no-untyped-def]
        """Classify and regress heads of one model over one input (``MultiInference``)."""
        seen: set[str] = set()
        results = []
        for task in tasks:
            if task.model_spec.name != servable.name:
                raise ServingError(
                    "INVALID_ARGUMENT", "All ModelSpecs in a MultiInferenceRequest must access the same model name."
                )
            signature_name = task.model_spec.signature_name or DEFAULT_SIGNATURE
            if signature_name in seen:
                raise ServingError("INVALID_ARGUMENT", f"Duplicate evaluation of signature: {signature_name}")
            seen.add(signature_name)
            result = inference_pb2.InferenceResult()
            result.model_spec.name = servable.name
            result.model_spec.version.value = servable.version
            result.model_spec.signature_name = signature_name
            if task.method_name == CLASSIFY_METHOD:
                result.classification_result.CopyFrom(self.classify(servable, signature_name, examples).result())
            elif task.method_name == REGRESS_METHOD:
                result.regression_result.CopyFrom(self.regress(servable, signature_name, examples).result())
            else:
                raise ServingError("UNIMPLEMENTED", f"Unsupported signature method_name: {task.method_name}")
            results.append(result)
        return results

    def close(self, timeout: float = 30) -> None:
        """Run what is queued, then stop batching, polling and the worker threads."""
        if self.scheduler is not None:
            self.scheduler.stop(timeout)
        self.manager.stop()
        if self._executor is not None:
            self._executor.shutdown(wait=True)


def build_predictor(options: ServerOptions, metrics: ServingMetrics) -> Predictor:
    """The serving engine (manager, batching when enabled, predictor) wired together.

    ``imgclf serve`` puts REST and gRPC in front of it; the gateway's local backend calls it directly.
    """
    scheduler = None
    if options.enable_batching:
        scheduler = BatchScheduler(options.batching_parameters or BatchingParameters(), metrics)
    elif options.batching_parameters is not None:
        raise ConfigError("--batching-parameters-file needs --enable-batching")
    manager = ModelManager(
        load_model_config(options),
        metrics,
        enable_warmup=options.enable_model_warmup,
        warmup_iterations=options.num_request_iterations_for_warmup,
        on_unload=lambda name, version: predictor.forget(name, version),
        prefer_tflite_model=options.prefer_tflite_model,
        tflite_threads=options.tensorflow_intra_op_parallelism or None,
    )
    predictor = Predictor(manager, metrics, scheduler)
    return predictor


def serialized_examples(examples: list[example_pb2.Example], context: example_pb2.Example | None) -> np.ndarray:
    """tf.Example inputs as the serialized-string tensor a classify/regress signature takes."""
    if not examples:
        raise ServingError("INVALID_ARGUMENT", "Input is empty.")
    serialized = []
    for example in examples:
        if context is not None:  # context features first, each example's own features win
            merged = example_pb2.Example()
            merged.CopyFrom(context)
            for key, feature in example.features.feature.items():
                merged.features.feature[key].CopyFrom(feature)
            example = merged
        serialized.append(example.SerializeToString())
    return np.array(serialized, dtype=object)


def _example_signature(servable: ServableVersion, signature_name: str) -> Signature:
    """The signature a Classify or Regress request names (TF Serving's ``Get*SignatureDef``)."""
    key = signature_name or DEFAULT_SIGNATURE
    signature = servable.signatures.get(key)
    if signature is None:
        raise ServingError("INVALID_ARGUMENT", f"No signature was found with the name: {key}")
    return signature


def classification_result(outputs: Tensors, count: int) -> classification_pb2.ClassificationResult:
    """The outputs as a result, checked as TF Serving's ``PostProcessClassificationResult`` does."""
    classes, scores = outputs.get("classes"), outputs.get("scores")
    for name, value, dtype in (("classes", classes, "DT_STRING"), ("scores", scores, "DT_FLOAT")):
        if value is None:
            continue
        if value.ndim != 2:
            shape = "[" + ",".join(map(str, value.shape)) + "]"
            raise ServingError("INVALID_ARGUMENT", f"Expected Tensor shape: [batch_size num_classes] but got {shape}")
        if value.dtype != (object if dtype == "DT_STRING" else np.float32):
            got = "DT_STRING" if value.dtype == object else f"DT_{dtype_name(tf.dtypes.as_dtype(value.dtype)).upper()}"
            raise ServingError("INVALID_ARGUMENT", f"Expected {name} Tensor of {dtype}. Got: {got}")
        if value.shape[0] != count:
            raise ServingError(
                "INVALID_ARGUMENT", f"Expected {name} output batch size of {count}. Got: {value.shape[0]}"
            )
    if classes is not None and scores is not None and classes.shape[1] != scores.shape[1]:
        raise ServingError(
            "INVALID_ARGUMENT",
            f"Tensors class and score should match in dim_size(1). Got {classes.shape[1]} vs. {scores.shape[1]}",
        )
    result = classification_pb2.ClassificationResult()
    columns = (classes if classes is not None else scores).shape[1]  # type: ignore[union-attr]
    for row in range(count):
        classifications = result.classifications.add()
        for column in range(columns):
            item = classifications.classes.add()
            if classes is not None:
                item.label = _text(classes[row, column])
            if scores is not None:
                item.score = float(scores[row, column])
    return result


def regression_result(values: np.ndarray, count: int) -> regression_pb2.RegressionResult:
    if values.shape[0] != count or (values.ndim == 2 and values.shape[1] != 1) or values.ndim > 2:
        raise ServingError("INVALID_ARGUMENT", f"Expected output Tensor shape to be [{count}] or [{count},1]")
    result = regression_pb2.RegressionResult()
    for value in values.reshape(count):
        result.regressions.add().value = float(value)
    return result


def _text(value) -> str:  # type: ignore[no-untyped-def]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def chain(future: Future, convert) -> Future:  # type: ignore[no-untyped-def]
    """A future for ``convert(future.result())``."""
    chained: Future = Future()

    def done(source: Future) -> None:
        try:
            chained.set_result(convert(source.result()))
        except Exception as error:
            chained.set_exception(error)

    future.add_done_callback(done)
    return chained
