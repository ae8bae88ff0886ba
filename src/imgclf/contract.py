"""The export contract: what an imgclf version directory holds and how to read it (standard library only).

Every part of imgclf that writes or reads an export goes through this module: the SavedModel's
signature, input and output names, the files beside it (labels, model card, reference profile,
warmup requests, gate result, manifest), the integer-version scan, and the check that a version
directory is whole. TensorFlow, the model server and the gateway all agree because they all read
these names from here.

``REGISTRY/NAME/<version>/``::

    saved_model.pb, variables/            the SavedModel (signatures below)
    assets/labels.txt                     class names, one per line, in output order
    assets.extra/model_card.json          classes, preprocessing, threshold, metrics, versions
    assets.extra/reference_profile.json   what monitoring compares production traffic with
    assets.extra/tf_serving_warmup_requests
    assets.extra/gate_result.json         written by the promotion gate (and BLESSED/NOT_BLESSED)
    assets.extra/export_manifest.json     written last: size and SHA-256 of every file
    model.tflite, model.<variant>.tflite  LiteRT variants (``--tflite``), with assets.extra/litert_io/

``serving_default``: ``image_bytes`` (string [N], encoded images) → ``scores`` (float32 [N, classes]),
``class_ids`` (int64 [N]), ``labels`` (string [N]), ``embedding_projection`` (float32 [N, 32]) and
``input_statistics`` (float32 [N, 12]); exports made before the last two existed lack them.

``classify`` (method name ``tensorflow/serving/classify``, for TF Serving's Classify API):
``inputs`` (string [N], serialized tf.Example protos with the encoded image under the bytes
feature ``image/encoded``) → ``classes`` (string [N, classes], the labels) and ``scores`` (float32
[N, classes]). Exports made before it existed lack it.

An export made with ``--tflite int8`` (``float16``, ``dynamic``, ``float32``; several allowed) also holds
LiteRT (TFLite) models of the network after preprocessing: the first variant named is
``model.tflite`` (what TF Serving's ``--prefer_tflite_model`` reads), the others
``model.<variant>.tflite``. Each takes ``normalized_pixels`` (float32 [N, size, size, 3], already
decoded, resized and normalized; int8: int8 with the input quantization in the model card) and
answers ``scores`` (float32 [N, classes]; int8: int8). ``assets.extra/litert_io/`` is a small
SavedModel that does the rest with the export's own graph: ``decode`` (``image_bytes`` →
``normalized_pixels``, ``pixels``, ``input_statistics``), ``decode_examples`` (``inputs`` →
``normalized_pixels``) and ``decide`` (``scores`` → ``class_ids``, ``labels``). The model card's
``litert`` entry names the variants, their files, sizes, quantization and measured metrics.

An export made with ``--tta flip`` (or ``flip+crops``) answers the same signatures with the same
names and shapes; its scores are the mean over augmented views of each image (model card: ``tta``).

A version can be there but not whole: copied with ``cp -r`` or rsync while a server polls, or
overwritten by hand. ``check_export`` compares a directory with its manifest; an export made before
manifests existed (or by another tool) is checked by its structure: ``saved_model.pb`` must be a
well-formed protocol buffer with a MetaGraph. Files added after export (the gate's result, for
example) are not in the manifest and do not matter.

Example:
    >>> read_labels(Path("registry/cats_dogs/3"))
    ['cats', 'dogs']
    >>> check_export(Path("registry/cats_dogs/3"))
    ExportCheck(complete=True, reason='', verified=True)
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgclf.errors import ConfigError, ExportError

# ------------------------------------------------------------------ signatures and tensors
SERVING_SIGNATURE = "serving_default"  # encoded image bytes in (TF Serving's default signature)
PIXELS_SIGNATURE = "serving_pixels"  # resized float RGB pixels in
FEATURES_SIGNATURE = "serving_features"  # serving_default plus the full pooled embedding
INPUT_BYTES = "image_bytes"
INPUT_PIXELS = "pixels"
OUTPUT_SCORES = "scores"
OUTPUT_CLASS_IDS = "class_ids"
OUTPUT_LABELS = "labels"
OUTPUT_EMBEDDING_PROJECTION = "embedding_projection"  # optional: exports before it lack it
OUTPUT_INPUT_STATISTICS = "input_statistics"  # optional: exports before it lack it
OUTPUT_EMBEDDING = "embedding"  # serving_features only
CLASSIFICATION_OUTPUTS = (OUTPUT_SCORES, OUTPUT_CLASS_IDS)  # what every export answers
MONITORING_OUTPUTS = (OUTPUT_EMBEDDING_PROJECTION, OUTPUT_INPUT_STATISTICS)
# TF Serving's Classify API (signature_constants.CLASSIFY_*): serialized tf.Examples in
CLASSIFY_SIGNATURE = "classify"
CLASSIFY_METHOD_NAME = "tensorflow/serving/classify"  # written into saved_model.pb after saving
CLASSIFY_INPUTS = "inputs"
CLASSIFY_OUTPUT_CLASSES = "classes"
CLASSIFY_OUTPUT_SCORES = "scores"
EXAMPLE_IMAGE_FEATURE = "image/encoded"  # the encoded image's tf.Example key (TFRecord / Object Detection convention)
PROJECTION_DIM = 32  # embedding_projection = pooled embedding · Gaussian matrix (seed below) / √32
PROJECTION_SEED = 0
# Test-time augmentation baked into every signature (``imgclf export --tta``; ``imgclf.export.tta``):
# the model card's ``tta`` entry says which; exports made before it existed have none (no TTA).
TTA_NONE = "none"
TTA_MODES = (TTA_NONE, "flip", "flip+crops")


def check_tta(mode: str, option: str = "tta") -> str:
    """``mode`` if it is a test-time augmentation mode; else ``ConfigError`` naming ``option``."""
    if mode not in TTA_MODES:
        raise ConfigError(f"invalid {option} {mode!r}: choose one of {', '.join(TTA_MODES)}")
    return mode


# LiteRT (TFLite) variants (``imgclf export --tflite``; ``imgclf.export.litert``)
TFLITE_VARIANTS = ("int8", "float16", "dynamic", "float32")
TFLITE_FILE = "model.tflite"  # the first variant exported (TF Serving's --prefer_tflite_model reads it)
LITERT_SIGNATURE = "serving_default"  # the .tflite's one signature
LITERT_INPUT = "normalized_pixels"  # the .tflite's input: the network's, after imgclf.preprocessing
LITERT_DECODE_SIGNATURE = "decode"  # litert_io: image_bytes -> normalized_pixels, pixels, input_statistics
LITERT_EXAMPLES_SIGNATURE = "decode_examples"  # litert_io: inputs (tf.Example) -> normalized_pixels
LITERT_DECIDE_SIGNATURE = "decide"  # litert_io: scores -> class_ids, labels
LITERT_SERVED_SIGNATURES = (SERVING_SIGNATURE, CLASSIFY_SIGNATURE)  # what a LiteRT-served version answers


def check_tflite_variants(variants: list[str] | tuple[str, ...], option: str = "tflite") -> list[str]:
    """The variants in order without repeats (``"int8,float16"`` items are split); ``ConfigError`` naming
    ``option`` for an unknown one."""
    chosen: list[str] = []
    for item in variants:
        for variant in (part.strip() for part in str(item).split(",")):
            if variant not in TFLITE_VARIANTS:
                raise ConfigError(f"invalid {option} {variant!r}: choose from {', '.join(TFLITE_VARIANTS)}")
            if variant not in chosen:
                chosen.append(variant)
    return chosen


def tflite_file_name(variant: str, first: bool) -> str:
    """Where a variant goes in the version directory: the first one is ``model.tflite``."""
    return TFLITE_FILE if first else f"model.{variant}.tflite"


def tflite_variant_path(version_dir: str | Path, variant: str | None = None) -> Path:
    """A LiteRT variant's file in an export (``None``: ``model.tflite``); ``ExportError`` if it has none."""
    version_dir = Path(version_dir)
    if variant is None:
        path = version_dir / TFLITE_FILE
    else:
        entry = read_model_card(version_dir).get("litert", {}).get("variants", {}).get(variant)
        if not isinstance(entry, dict) or "file" not in entry:
            raise ExportError(f"{version_dir} has no LiteRT {variant} variant (export it with --tflite {variant})")
        path = version_dir / entry["file"]
    if not path.is_file():
        raise ExportError(f"{path} is missing")
    return path


# ------------------------------------------------------------------ files
SAVED_MODEL_FILE = "saved_model.pb"
LABELS_FILE = Path("assets") / "labels.txt"
EXTRA_DIR = Path("assets.extra")
MODEL_CARD_FILE = EXTRA_DIR / "model_card.json"
REFERENCE_PROFILE_FILE = EXTRA_DIR / "reference_profile.json"
WARMUP_FILE = EXTRA_DIR / "tf_serving_warmup_requests"
GATE_RESULT_FILE = EXTRA_DIR / "gate_result.json"
MANIFEST_FILE = EXTRA_DIR / "export_manifest.json"
MANIFEST_FORMAT = 1
LITERT_IO_DIR = EXTRA_DIR / "litert_io"  # the small SavedModel around a LiteRT variant (see above)


def read_labels(version_dir: str | Path) -> list[str]:
    """The export's class names in output order ([] if it has no labels file)."""
    path = Path(version_dir) / LABELS_FILE
    if not path.is_file():
        return []
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line]


def read_model_card(version_dir: str | Path) -> dict[str, Any]:
    """The export's model card; ``ExportError`` if it is missing or unreadable."""
    path = Path(version_dir) / MODEL_CARD_FILE
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ExportError(f"no readable model card at {path}: {error}") from None
    if not isinstance(card, dict):
        raise ExportError(f"the model card at {path} is not a JSON object")
    return card


def version_directories(base_path: str | Path) -> list[int]:
    """Child directories of ``base_path`` whose names are integers (TF Serving's version dirs), ascending."""
    try:
        children = list(Path(base_path).iterdir())
    except OSError:
        return []
    return sorted(int(child.name) for child in children if child.name.isdigit() and child.is_dir())


@dataclass(frozen=True)
class ExportCheck:
    complete: bool
    reason: str = ""  # why not, when not complete
    verified: bool = False  # True: checked against the export's manifest; False: by structure only


def write_manifest(export_dir: Path) -> Path:
    """Record every file of ``export_dir`` (size and SHA-256); call it after the last file is written."""
    files = {}
    for path in sorted(_files(export_dir)):
        relative = path.relative_to(export_dir).as_posix()
        files[relative] = {"size": path.stat().st_size, "sha256": _sha256(path)}
    target = export_dir / MANIFEST_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"format": MANIFEST_FORMAT, "files": files}, indent=1) + "\n", encoding="utf-8")
    return target


def check_export(version_dir: Path) -> ExportCheck:
    """Whether ``version_dir`` holds a whole export (see the module docstring)."""
    manifest_path = version_dir / MANIFEST_FILE
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return _check_structure(version_dir)
    except (OSError, ValueError) as error:
        return ExportCheck(False, f"its manifest cannot be read ({type(error).__name__}): still being copied?")
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict) or SAVED_MODEL_FILE not in files:
        return ExportCheck(False, f"its manifest {MANIFEST_FILE} lists no {SAVED_MODEL_FILE}")
    for relative, expected in sorted(files.items()):
        path = version_dir / relative
        try:
            size = path.stat().st_size
        except OSError:
            return ExportCheck(False, f"{relative} is missing")
        if size != expected.get("size"):
            return ExportCheck(False, f"{relative} has {size} of its {expected.get('size')} bytes")
        if _sha256(path) != expected.get("sha256"):
            return ExportCheck(False, f"{relative} does not match its checksum")
    return ExportCheck(True, verified=True)


def directory_fingerprint(version_dir: Path) -> tuple[tuple[str, int, int], ...]:
    """Every file's path, size and modification time: changes while files are copied in."""
    entries = []
    for path in _files(version_dir):
        try:
            stat = path.stat()
        except OSError:
            continue
        entries.append((path.relative_to(version_dir).as_posix(), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def _check_structure(version_dir: Path) -> ExportCheck:
    try:
        data = (version_dir / SAVED_MODEL_FILE).read_bytes()
    except OSError:
        return ExportCheck(False, f"no {SAVED_MODEL_FILE}")
    if not _has_meta_graph(data):
        return ExportCheck(False, f"{SAVED_MODEL_FILE} is not a SavedModel (cut short or corrupt)")
    variables = version_dir / "variables"
    if variables.is_dir() and not (variables / "variables.index").is_file():
        return ExportCheck(False, "variables/variables.index is missing")
    return ExportCheck(True)


def _has_meta_graph(data: bytes) -> bool:
    """Whether ``data`` parses as a ``SavedModel`` message's top level with at least one ``meta_graphs``.

    Walks the protocol buffer wire format (fields 1: int64 schema version, 2: MetaGraphDef), so
    a cut-short or overwritten file is told apart without importing TensorFlow.
    """
    position, meta_graphs = 0, 0
    while position < len(data):
        key, position = _varint(data, position)
        if key is None:
            return False
        field, wire_type = key >> 3, key & 7
        if field == 0:
            return False
        if wire_type == 0:
            value, position = _varint(data, position)
            if value is None:
                return False
        elif wire_type == 2:
            length, position = _varint(data, position)
            if length is None or position + length > len(data):
                return False
            position += length
            meta_graphs += field == 2
        elif wire_type in (1, 5):
            position += 8 if wire_type == 1 else 4
            if position > len(data):
                return False
        else:  # groups (3, 4) are not used by SavedModel; 6 and 7 do not exist
            return False
    return meta_graphs > 0


def _varint(data: bytes, position: int) -> tuple[int | None, int]:
    value, shift = 0, 0
    while position < len(data) and shift < 64:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, position
        shift += 7
    return None, position


def _files(root: Path) -> list[Path]:
    found = []
    for directory, _, names in os.walk(root):
        found += [Path(directory) / name for name in names]
    return [path for path in found if path.relative_to(root) != MANIFEST_FILE]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
