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

from imgclf.contract import MODEL_CARD_FILE, TTA_NONE, check_tta, write_manifest
from imgclf.export.savedmodel import check_model_name, write_export
from imgclf.registry.store import Registry
from imgclf.run_dir import RunDir, write_json


def export_run(
    run_dir: str | Path,
    registry: str | Path,
    name: str | None = None,
    reference_data: str | None = None,
    tta: str = TTA_NONE,
) -> Path:
    """Export a trained run into ``registry/name/<next version>``; return that directory.

    ``name`` defaults to the run directory's name; ``reference_data`` (folder or CSV) replaces the
    run's validation split as the images the drift reference profile is measured on; ``tta``
    (``none``, ``flip``, ``flip+crops``) bakes test-time augmentation into the signatures.
    """
    check_tta(tta)
    run = RunDir(Path(run_dir).expanduser().resolve())
    run.require_trained()  # before anything is created in the registry
    name = check_model_name(name or run.path.name)
    base = Path(registry).expanduser().resolve() / name
    base.mkdir(parents=True, exist_ok=True)
    staging = base / f".export-{uuid.uuid4().hex[:12]}"
    try:
        card = write_export(run.path, staging, name, reference_data, tta)

        def finish(version: int) -> None:
            card["version"] = version
            write_json(staging / MODEL_CARD_FILE, card)
            write_manifest(staging)

        return base / str(Registry(base.parent).publish(staging, name, finish))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
