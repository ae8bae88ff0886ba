"""Model references: ``REGISTRY/NAME``, ``REGISTRY/NAME/VERSION`` or ``REGISTRY/NAME@LABEL`` → one whole version.

``REGISTRY/NAME`` is the version unaddressed traffic gets (``Registry.serving_version``: stable, as
``imgclf predict`` and the gateway choose it), ``/VERSION`` that version, ``@LABEL`` the version a
label (``stable``, ``canary`` or any other, as TF Serving's ``version_labels``) points at. A version
whose files are not whole (``imgclf.contract.check_export``) is refused, as the model server would.

Example:
    >>> resolve_reference("registry/cats_dogs@canary")
    ModelReference(name='cats_dogs', version=4, path=PosixPath('registry/cats_dogs/4'))
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from imgclf.errors import RegistryError
from imgclf.registry.store import Registry


@dataclass(frozen=True)
class ModelReference:
    name: str
    version: int
    path: Path  # the version directory


def resolve_reference(reference: str | Path) -> ModelReference:
    """The version ``reference`` names (module docstring); ``RegistryError`` in one line if there is none."""
    text = str(reference).rstrip("/")
    label = None
    if "@" in Path(text).name:
        text, label = text.rsplit("@", 1)
        if not label:
            raise RegistryError(f"model reference {reference}: empty label after @")
    path = Path(text).expanduser()
    if label is None and path.name.isdigit():
        name_dir, version = path.parent, int(path.name)
    else:
        name_dir, version = path, None
    if not name_dir.name or not name_dir.parent.is_dir():
        raise RegistryError(f"model reference {reference}: expected REGISTRY/NAME[/VERSION|@LABEL]")
    registry, name = Registry(name_dir.parent), name_dir.name
    if label is not None:
        labels = registry.state(name).labels
        if label not in labels:
            known = ", ".join(f"{k}={v}" for k, v in sorted(labels.items())) or "none"
            raise RegistryError(f"{name} has no version labelled {label!r} (labels: {known})")
        version = labels[label]
    elif version is None:
        version = registry.serving_version(name)
    directory = registry.version_dir(name, version)
    check = registry.check(name, version)
    if not check.complete:
        raise RegistryError(f"{name} version {version} cannot be used: {check.reason}")
    return ModelReference(name, version, directory)
