"""``imgclf export``: a trained run becomes the next version of a model in the registry.

The export is written under a hidden name in the model's directory (``imgclf.export.savedmodel``),
then ``Registry.publish`` gives it the next integer version: the model card names the version, the
manifest is written last (``imgclf.contract``), and one rename makes it appear whole, so TF
Serving never sees half an export. The first version of a model becomes its stable version; later
ones are candidates until promoted (``imgclf.registry.store``).

Example:
    >>> export_run("runs/cats_dogs", "registry", "cats_dogs")
    PosixPath('/.../registry/cats_dogs/4')
"""

from __future__ import annotations

import shutil
import uuid
from pathlib import Path

from imgclf.contract import MODEL_CARD_FILE, TTA_NONE, check_tflite_variants, check_tta, write_manifest
from imgclf.errors import ExportError
from imgclf.export.litert import DEFAULT_REPRESENTATIVE_IMAGES
from imgclf.export.savedmodel import check_model_name, write_export
from imgclf.registry.store import Registry
from imgclf.run_dir import RunDir, write_json


def export_run(
    run_dir: str | Path,
    registry: str | Path,
    name: str | None = None,
    reference_data: str | None = None,
    tta: str = TTA_NONE,
    tflite: list[str] | tuple[str, ...] = (),
    representative_images: int = DEFAULT_REPRESENTATIVE_IMAGES,
) -> Path:
    """Export a trained run into ``registry/name/<next version>``; return that directory.

    ``name`` defaults to the run directory's name; ``reference_data`` (folder or CSV) replaces the
    run's validation split as the images the drift reference profile is measured on; ``tta``
    (``none``, ``flip``, ``flip+crops``) bakes test-time augmentation into the signatures.
    ``tflite`` adds LiteRT variants (``int8``, ``float16``, ``dynamic``, ``float32``) beside the
    SavedModel; ``representative_images`` calibrate int8. When a variant fails to convert, the
    version is still published (without it) and ``ExportError`` then names the variant, the reason
    and the version.
    """
    check_tta(tta)
    tflite = check_tflite_variants(list(tflite))
    run = RunDir(Path(run_dir).expanduser().resolve())
    run.require_trained()  # before anything is created in the registry
    name = check_model_name(name or run.path.name)
    base = Path(registry).expanduser().resolve() / name
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".export-{uuid.uuid4().hex[:12]}"
    try:
        card = write_export(run.path, staging, name, reference_data, tta, tflite, representative_images)

        def finish(version: int) -> None:
            card["version"] = version
            write_json(staging / MODEL_CARD_FILE, card)
            write_manifest(staging)

        version_dir = base / str(Registry(base.parent).publish(staging, name, finish))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    failed = card.get("litert", {}).get("failed", {})
    if failed:
        reasons = "; ".join(f"{variant}: {reason}" for variant, reason in failed.items())
        raise ExportError(f"LiteRT conversion failed ({reasons}); the SavedModel was exported as {version_dir}")
    return version_dir
