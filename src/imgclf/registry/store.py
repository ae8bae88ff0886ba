"""Which versions of a model are stable, canary or labelled, and how they got there.

The registry is the directory ``imgclf export`` writes: ``REGISTRY/NAME/<version>/`` SavedModels.
Each model's state lives beside its versions in ``REGISTRY/NAME/registry.json`` (TF Serving
ignores non-integer names): its version labels (``stable``, ``canary`` and any others, the same
``version_labels`` TF Serving's model config holds), the canary's traffic share, and the history
of stable versions, which ``rollback`` walks back. Every change is a read-modify-write under an
exclusive lock, written atomically, so the gateway and the CLI never see half a state.

A model nobody promoted yet has no ``stable`` label: its newest version serves, as in TF Serving.

Example:
    >>> registry = Registry("registry")
    >>> registry.promote("cats_dogs", 4, to="canary")
    >>> registry.state("cats_dogs").labels
    {'stable': 3, 'canary': 4}
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgclf.errors import RegistryError

STATE_FILE = "registry.json"
STABLE, CANARY = "stable", "canary"
_LABEL = re.compile(r"^[A-Za-z0-9_]+$")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ModelState:
    labels: dict[str, int] = field(default_factory=dict)  # label → version (stable, canary, ...)
    canary_share: float = 0.0  # share of traffic the gateway sends to the canary
    history: list[dict[str, Any]] = field(default_factory=list)  # stable versions, oldest first

    @property
    def stable(self) -> int | None:
        return self.labels.get(STABLE)

    @property
    def canary(self) -> int | None:
        return self.labels.get(CANARY)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelState:
        return cls(
            labels={str(k): int(v) for k, v in data.get("labels", {}).items()},
            canary_share=float(data.get("canary_share", 0.0)),
            history=list(data.get("history", [])),
        )


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: str | None
    classes: list[str]
    metrics: dict[str, Any]
    labels: list[str]  # the labels pointing at it
    gate: str | None  # blessed, not_blessed, or None (never gated)

    @property
    def state(self) -> str:
        for name in (STABLE, CANARY):
            if name in self.labels:
                return name
        return "labelled" if self.labels else "available"


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise RegistryError(f"registry {self.root} is not a directory")

    # ------------------------------------------------------------ reading

    def models(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        base = self.root / name
        if not base.is_dir():
            return []
        return sorted(int(p.name) for p in base.iterdir() if p.is_dir() and p.name.isdigit())

    def version_dir(self, name: str, version: int) -> Path:
        path = self.root / name / str(version)
        if not path.is_dir():
            known = ", ".join(map(str, self.versions(name))) or "none"
            raise RegistryError(f"{name} has no version {version} in {self.root} (versions: {known})")
        return path

    def card(self, name: str, version: int) -> dict[str, Any]:
        path = self.version_dir(name, version) / "assets.extra" / "model_card.json"
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def state(self, name: str) -> ModelState:
        if not self.versions(name):
            raise RegistryError(f"no model {name!r} in {self.root} (models: {', '.join(self.models()) or 'none'})")
        path = self.root / name / STATE_FILE
        try:
            return ModelState.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return ModelState()
        except (OSError, ValueError) as error:
            raise RegistryError(f"cannot read {path}: {error}") from None

    def serving_version(self, name: str) -> int:
        """The version plain requests get: ``stable``, else the newest."""
        return self.state(name).stable or self.versions(name)[-1]

    def info(self, name: str, version: int) -> VersionInfo:
        card = self.card(name, version)
        state = self.state(name)
        gate_path = self.version_dir(name, version) / "assets.extra" / "gate_result.json"
        gate = None
        if gate_path.is_file():
            gate = "blessed" if json.loads(gate_path.read_text(encoding="utf-8")).get("blessed") else "not_blessed"
        return VersionInfo(
            version=version,
            created_at=card.get("created_at"),
            classes=list(card.get("classes", [])),
            metrics=dict(card.get("metrics", {})),
            labels=sorted(label for label, v in state.labels.items() if v == version),
            gate=gate,
        )

    # ------------------------------------------------------------ changing

    @contextlib.contextmanager
    def _change(self, name: str) -> Iterator[ModelState]:
        """Lock the model's state, hand it out for changes, write it back atomically."""
        self.state(name)  # the model exists
        base = self.root / name
        with (base / f".{STATE_FILE}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self.state(name)
                yield state
                tmp = base / f".{STATE_FILE}.{os.getpid()}.tmp"
                tmp.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
                os.replace(tmp, base / STATE_FILE)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def promote(
        self, name: str, version: int, to: str = STABLE, canary_share: float | None = None, force: bool = False
    ) -> ModelState:
        """Point ``stable`` or ``canary`` at ``version``. A new stable clears a canary of the same version.

        Only versions the promotion gate blessed (``imgclf.registry.gate``) unless ``force``.
        """
        if to not in (STABLE, CANARY):
            raise RegistryError(f"promote to stable or canary, not {to!r}")
        gate = self.info(name, version).gate
        if gate != "blessed" and not force:
            why = "was refused by the gate" if gate else "has not been through the gate"
            raise RegistryError(
                f"{name} version {version} {why}; run `imgclf models gate {name} {version} --data EVAL_DATA` "
                "(or promote with --force)"
            )
        with self._change(name) as state:
            if to == STABLE:
                if state.stable != version:
                    state.history.append({"version": version, "at": _now()})
                state.labels[STABLE] = version
                if state.canary == version:
                    del state.labels[CANARY]
                    state.canary_share = 0.0
            else:
                if state.stable == version:
                    raise RegistryError(f"{name} version {version} is already stable")
                state.labels[CANARY] = version
                if canary_share is not None:
                    state.canary_share = _share(canary_share)
        return state

    def set_canary_share(self, name: str, share: float) -> ModelState:
        with self._change(name) as state:
            if state.canary is None and share > 0:
                raise RegistryError(f"{name} has no canary; promote a version with --to canary first")
            state.canary_share = _share(share)
        return state

    def rollback(self, name: str) -> ModelState:
        """Stable back to the previous stable version (the canary, if any, is dropped)."""
        with self._change(name) as state:
            if len(state.history) < 2:
                raise RegistryError(f"{name} has no earlier stable version to roll back to")
            state.history.pop()
            previous = state.history[-1]["version"]
            self.version_dir(name, previous)
            state.labels[STABLE] = previous
            state.labels.pop(CANARY, None)
            state.canary_share = 0.0
        return state

    def label(self, name: str, version: int, label: str) -> ModelState:
        if not _LABEL.match(label) or label in (STABLE, CANARY):
            raise RegistryError(f"label {label!r}: use letters, digits and '_' (stable and canary: use promote)")
        self.version_dir(name, version)
        with self._change(name) as state:
            state.labels[label] = version
        return state

    def unlabel(self, name: str, label: str) -> ModelState:
        with self._change(name) as state:
            if state.labels.pop(label, None) is None:
                raise RegistryError(f"{name} has no label {label!r}")
            if label == CANARY:
                state.canary_share = 0.0
        return state

    def delete(self, name: str, version: int) -> None:
        """Remove a version; refused while any label (stable, canary, ...) points at it."""
        path = self.version_dir(name, version)
        with self._change(name) as state:
            labels = sorted(label for label, v in state.labels.items() if v == version)
            if labels:
                raise RegistryError(f"{name} version {version} is labelled {', '.join(labels)}; move the labels first")
            state.history = [h for h in state.history if h["version"] != version]
            trash = path.with_name(f".deleting-{version}")
            os.rename(path, trash)  # TF Serving stops seeing it at once
            shutil.rmtree(trash)


def _share(value: float) -> float:
    if not 0 <= value <= 1:
        raise RegistryError(f"canary share must be between 0 and 1, got {value}")
    return float(value)
