"""The model actor: each one loads the export once and classifies batches of paths through ``serving_default``.

A batch of input rows (``path``, and ``true_label`` for labelled input) becomes a batch of output
rows. Each file is read (a file over the size limit never is), hashed, and checked exactly as the
gateway checks an upload (``imgclf.data.image_validation``: empty, too large, unsupported format,
too many pixels or frames, truncated, corrupt); the files that pass go to the export's own
``serving_default`` signature as encoded bytes in one call, so the scores are the ones
``imgclf predict`` and the model server give. A file the signature's decoder refuses (complete but
broken inside) fails the call; the batch is then re-run file by file and only that file gets an
error, as the model server does with a refused request.

Nothing a file does is fatal: every input gets a row, with ``error`` empty or the reason
(``<code>: <message>``, the gateway's codes).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from imgclf.batch.sources import read_input
from imgclf.contract import INPUT_BYTES, OUTPUT_LABELS, OUTPUT_SCORES, SERVING_SIGNATURE, read_labels
from imgclf.data.image_validation import UploadLimits, validate_image
from imgclf.errors import UploadError

SCORE_PREFIX = "score_"  # one column per class: score_<class>
READ_THREADS = 8  # file reads overlap (object stores answer slowly); decoding and the model are TensorFlow's


@dataclass(frozen=True)
class ClassifierSpec:
    """Everything an actor needs, small enough to travel with the actor's class."""

    version_dir: str
    model: str
    version: int
    classes: tuple[str, ...]
    limits: UploadLimits
    threads: int  # TensorFlow's intra- and inter-op threads: the CPUs Ray gave the actor
    labelled: bool


def class_names(version_dir: str | Path) -> list[str]:
    """The export's classes in output order (``assets/labels.txt``)."""
    return read_labels(version_dir)


def output_schema(spec: ClassifierSpec) -> pa.Schema:
    fields = [
        pa.field("path", pa.string()),
        pa.field("sha256", pa.string()),
        pa.field("label", pa.string()),
        pa.field("confidence", pa.float64()),
        *(pa.field(SCORE_PREFIX + name, pa.float64()) for name in spec.classes),
        pa.field("model", pa.string()),
        pa.field("model_version", pa.int64()),
        pa.field("error", pa.string()),
    ]
    if spec.labelled:
        fields.insert(1, pa.field("true_label", pa.string()))
    return pa.schema(fields)


class SignatureClassifier:
    """A Ray Data actor (``map_batches``); ``spec`` is set on a subclass made per job (``bind``)."""

    spec: ClassifierSpec

    @classmethod
    def bind(cls, spec: ClassifierSpec) -> type[SignatureClassifier]:
        # The spec travels inside the class (pickled by value) rather than as constructor arguments,
        # which Ray keeps in the object store and warns about for restartable actors.
        return type("SignatureClassifier", (cls,), {"spec": spec})

    def __init__(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(self.spec.threads)
        tf.config.threading.set_inter_op_parallelism_threads(self.spec.threads)
        self._tf = tf
        self._loaded = tf.saved_model.load(self.spec.version_dir)  # once per actor
        self._signature = self._loaded.signatures[SERVING_SIGNATURE]
        self._schema = output_schema(self.spec)
        self._reads = ThreadPoolExecutor(READ_THREADS)

    def __call__(self, batch: pa.Table) -> pa.Table:
        paths = batch.column("path").to_pylist()
        checked = list(self._reads.map(self._check, paths))
        rows: list[dict[str, Any]] = [
            {"path": path, "sha256": sha, "error": error, "model": self.spec.model, "model_version": self.spec.version}
            for path, (_, sha, error) in zip(paths, checked, strict=True)
        ]
        if self.spec.labelled:
            for row, label in zip(rows, batch.column("true_label").to_pylist(), strict=True):
                row["true_label"] = label
        good = [index for index, (data, _, error) in enumerate(checked) if error is None and data is not None]
        for index, (scores, label) in zip(good, self._classify([checked[i][0] for i in good]), strict=True):
            if isinstance(scores, str):
                rows[index]["error"] = scores
                continue
            rows[index]["label"] = label
            for name, score in zip(self.spec.classes, scores, strict=True):
                rows[index][SCORE_PREFIX + name] = float(score)
            if label in self.spec.classes:
                rows[index]["confidence"] = float(scores[self.spec.classes.index(label)])
        for row in rows:
            row["error"] = row["error"] or ""
        return pa.Table.from_pylist(rows, schema=self._schema)

    def _check(self, path: str) -> tuple[bytes | None, str, str | None]:
        """(bytes, sha256, error): the gateway's checks, never raising."""
        try:
            data, size = read_input(path, self.spec.limits.max_bytes)
        except OSError as exc:
            return None, "", f"unreadable: {exc.strerror or exc}"
        if data is None:
            return None, "", f"file_too_large: the file is {size} bytes; the limit is {self.spec.limits.max_bytes}"
        sha = hashlib.sha256(data).hexdigest()
        try:
            validate_image(data, self.spec.limits)
        except UploadError as error:
            return None, sha, f"{error.code}: {error.message}"
        return data, sha, None

    def _classify(self, images: list[bytes]) -> list[tuple[Any, str]]:
        """(scores, label) per image, or (error message, "") for an image the signature refuses."""
        if not images:
            return []
        try:
            return self._run(images)
        except self._tf.errors.InvalidArgumentError:
            if len(images) == 1:
                return [("corrupt_image: the model's decoder refused the image", "")]
            return [answer for image in images for answer in self._classify([image])]

    def _run(self, images: list[bytes]) -> list[tuple[Any, str]]:
        outputs = self._signature(**{INPUT_BYTES: self._tf.constant(images, dtype=self._tf.string)})
        scores = np.asarray(outputs[OUTPUT_SCORES])
        labels = [label.decode() for label in np.asarray(outputs[OUTPUT_LABELS])]
        return list(zip(scores, labels, strict=True))
