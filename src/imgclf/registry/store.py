"""Which versions of a model are stable, canary or labelled, and how they got there.

The registry is the directory ``imgclf export`` writes: ``REGISTRY/NAME/<version>/`` SavedModels.
Each model's state lives beside its versions in ``REGISTRY/NAME/registry.json`` (TF Serving
ignores non-integer names): its version labels (``stable``, ``canary`` and any others, the same
``version_labels`` TF Serving's model config holds), the canary's traffic share, and the history
of stable versions, which ``rollback`` walks back. Every change is a read-modify-write under an
exclusive lock, written atomically, so the gateway and the CLI never see half a state.

Exports are candidates: the first version of a model becomes ``stable`` when it is exported
(``publish``); later versions serve no unaddressed traffic until promoted. A model whose policy is
``latest`` (``set_policy``) makes every export stable at once, as TF Serving's newest-version
policy would. A version whose files are not whole (``imgclf.contract.check_export``) is never
promoted, labelled or chosen to serve. Every release action has an undo: ``rollback`` ends a
canary, or moves stable back; ``unlabel`` removes any label but stable.

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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from imgclf.contract import GATE_RESULT_FILE as GATE_FILE
from imgclf.contract import (
    ExportCheck,
    check_export,
    directory_fingerprint,
    read_model_card,
    version_directories,
)
from imgclf.errors import ExportError, RegistryError

STATE_FILE = "registry.json"
STABLE, CANARY = "stable", "canary"
PROMOTED, LATEST = "promoted", "latest"  # version policies: exports wait for promotion, or serve at once
_LABEL = re.compile(r"^[A-Za-z0-9_]+$")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class ModelState:
    labels: dict[str, int] = field(default_factory=dict)  # label → version (stable, canary, ...)
    canary_share: float = 0.0  # share of traffic the gateway sends to the canary
    history: list[dict[str, Any]] = field(default_factory=list)  # stable versions, oldest first
    policy: str = PROMOTED  # PROMOTED: exports are candidates; LATEST: each export becomes stable
    overrides: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # version → forced promotions
    canary_since: str | None = None  # when the current canary started taking traffic
    decisions: list[dict[str, Any]] = field(default_factory=list)  # retrain and judge decisions, oldest first

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
            policy=str(data.get("policy", PROMOTED)),
            overrides={str(k): list(v) for k, v in data.get("overrides", {}).items()},
            canary_since=data.get("canary_since"),
            decisions=list(data.get("decisions", [])),
        )


@dataclass(frozen=True)
class VersionInfo:
    version: int
    created_at: str | None
    classes: list[str]
    metrics: dict[str, Any]
    labels: list[str]  # the labels pointing at it
    gate: str | None  # blessed, not_blessed, or None (never gated)
    gate_metrics: dict[str, Any] = field(default_factory=dict)  # what the gate measured, if it ran
    overrides: list[dict[str, Any]] = field(default_factory=list)  # promotions forced past the gate
    files: ExportCheck = field(default_factory=lambda: ExportCheck(True))

    @property
    def state(self) -> str:
        if not self.files.complete:
            return "broken"
        for name in (STABLE, CANARY):
            if name in self.labels:
                return name
        return "labelled" if self.labels else "candidate"

    @property
    def accuracy(self) -> Any:
        """The card's accuracy (from the training run), else what the gate measured."""
        return self.metrics.get("accuracy", self.gate_metrics.get("accuracy"))


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise RegistryError(f"registry {self.root} is not a directory")
        self._checks: dict[Path, tuple[Any, ExportCheck]] = {}  # version dir → (fingerprint, its check)

    # ------------------------------------------------------------ reading

    def models(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and self.versions(p.name))

    def versions(self, name: str) -> list[int]:
        return version_directories(self.root / name)

    def version_dir(self, name: str, version: int) -> Path:
        path = self.root / name / str(version)
        if not path.is_dir():
            known = ", ".join(map(str, self.versions(name))) or "none"
            raise RegistryError(f"{name} has no version {version} in {self.root} (versions: {known})")
        return path

    def check(self, name: str, version: int) -> ExportCheck:
        """Whether the version's files are whole (``imgclf.contract.check_export``); re-checked when they change."""
        path = self.version_dir(name, version)
        fingerprint = directory_fingerprint(path)
        cached = self._checks.get(path)
        if cached is not None and cached[0] == fingerprint:
            return cached[1]
        result = check_export(path)
        self._checks[path] = (fingerprint, result)
        return result

    def can_serve(self, name: str, version: int | None) -> bool:
        """The version exists and its files are whole."""
        return version is not None and version in self.versions(name) and self.check(name, version).complete

    def card(self, name: str, version: int) -> dict[str, Any]:
        """The version's model card ({} if it has none that can be read)."""
        try:
            return read_model_card(self.version_dir(name, version))
        except ExportError:
            return {}

    def state(self, name: str) -> ModelState:
        if not self.versions(name):
            raise RegistryError(f"no model {name!r} in {self.root} (models: {', '.join(self.models()) or 'none'})")
        return self._read_state(name)

    def _read_state(self, name: str) -> ModelState:
        path = self.root / name / STATE_FILE
        try:
            return ModelState.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return ModelState()
        except (OSError, ValueError) as error:
            raise RegistryError(f"cannot read {path}: {error}") from None

    def serving_version(self, name: str) -> int:
        """The version unaddressed requests get: stable, else the stable before it that can serve.

        A model with no stable label (a registry written before exports were candidates) is served
        by its newest version that can serve, as TF Serving's ``latest`` policy would.
        """
        state = self.state(name)
        for version in [state.stable, *(h["version"] for h in reversed(state.history))]:
            if self.can_serve(name, version):
                return version  # type: ignore[return-value]
        if state.stable is None:
            for version in reversed(self.versions(name)):
                if self.check(name, version).complete:
                    return version
        raise RegistryError(f"no version of {name} in {self.root} can serve (see imgclf models list)")

    def info(self, name: str, version: int) -> VersionInfo:
        card = self.card(name, version)
        state = self.state(name)
        gate_path = self.version_dir(name, version) / GATE_FILE
        gate, gate_metrics = None, {}
        if gate_path.is_file():
            try:
                result = json.loads(gate_path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                result = {}
            gate = "blessed" if result.get("blessed") else "not_blessed"
            gate_metrics = dict(result.get("candidate_metrics") or {})
        return VersionInfo(
            version=version,
            created_at=card.get("created_at"),
            classes=list(card.get("classes", [])),
            metrics=dict(card.get("metrics", {})),
            labels=sorted(label for label, v in state.labels.items() if v == version),
            gate=gate,
            gate_metrics=gate_metrics,
            overrides=list(state.overrides.get(str(version), [])),
            files=self.check(name, version),
        )

    def gate_failures(self, name: str, version: int) -> list[str]:
        """What ``promote --force`` would override: the gate's failed checks, or that it never ran."""
        path = self.version_dir(name, version) / GATE_FILE
        if not path.is_file():
            return [f"{name} version {version} has not been through the gate"]
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            return [f"its gate result cannot be read: {error}"]
        if result.get("blessed"):
            return []
        return [c["message"] for c in result.get("checks", []) if not c.get("passed")] or ["the gate refused it"]

    # ------------------------------------------------------------ changing

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[ModelState]:
        """Lock the model's state, hand it out for changes, write it back atomically."""
        base = self.root / name
        base.mkdir(exist_ok=True)
        with (base / f".{STATE_FILE}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                state = self._read_state(name)
                yield state
                self._write_state(name, state)
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_state(self, name: str, state: ModelState) -> None:
        base = self.root / name
        tmp = base / f".{STATE_FILE}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, base / STATE_FILE)

    @contextlib.contextmanager
    def _change(self, name: str) -> Iterator[ModelState]:
        self.state(name)  # the model exists
        with self._locked(name) as state:
            yield state

    def _require_servable(self, name: str, version: int) -> None:
        check = self.check(name, version)
        if not check.complete:
            raise RegistryError(f"{name} version {version} cannot serve: {check.reason}")

    def publish(self, staged: Path, name: str, finish: Callable[[int], None] | None = None) -> int:
        """Give a finished export in ``REGISTRY/NAME/.something`` the next integer version; return it.

        ``finish(version)`` runs just before the rename (to write files that name the version). The
        rename is atomic, so a model server never sees half an export. The first version of a model
        becomes stable; later ones are candidates unless the model's policy is ``latest``. A model
        that has versions but no stable label (written before exports were candidates) first gets
        its serving version labelled stable, so the new export does not take its traffic.
        """
        with self._locked(name) as state:
            if state.stable is None and state.policy == PROMOTED:
                serving = next((v for v in reversed(self.versions(name)) if self.check(name, v).complete), None)
                if serving is not None:
                    self._set_stable(state, serving, "was serving when exports became candidates")
                    self._write_state(name, state)  # before the new version appears
            version = self._rename_to_next_version(staged, name, finish)
            if state.stable is None:
                self._set_stable(state, version, "first export")
            elif state.policy == LATEST:
                self._set_stable(state, version, "policy latest")
        return version

    def _rename_to_next_version(self, staged: Path, name: str, finish: Callable[[int], None] | None) -> int:
        base = self.root / name
        for _ in range(100):
            version = (self.versions(name) or [0])[-1] + 1
            if finish is not None:
                finish(version)
            target = base / str(version)
            try:
                os.rename(staged, target)  # fails if another writer took this version meanwhile
            except OSError:
                if target.exists():
                    continue
                raise
            return version
        raise RegistryError(f"could not find a free version number under {base}")

    @staticmethod
    def _set_stable(state: ModelState, version: int, reason: str, **details: Any) -> None:
        if state.stable != version:
            state.history.append({"version": version, "at": _now(), "reason": reason, **details})
        state.labels[STABLE] = version
        if state.canary == version:
            del state.labels[CANARY]
            state.canary_share = 0.0

    def set_policy(self, name: str, policy: str) -> ModelState:
        """``promoted`` (exports wait for promotion) or ``latest`` (each export becomes stable, as in TF Serving)."""
        if policy not in (PROMOTED, LATEST):
            raise RegistryError(f"policy must be {PROMOTED} or {LATEST}, not {policy!r}")
        with self._change(name) as state:
            state.policy = policy
        return state

    def promote(
        self, name: str, version: int, to: str = STABLE, canary_share: float | None = None, force: bool = False
    ) -> ModelState:
        """Point ``stable`` or ``canary`` at ``version``. A new stable clears a canary of the same version.

        Only versions the promotion gate blessed (``imgclf.registry.gate``) unless ``force``; a forced
        promotion is recorded with the checks it overrode (``VersionInfo.overrides``). A version whose
        files are not whole is refused even with ``force``.
        """
        if to not in (STABLE, CANARY):
            raise RegistryError(f"promote to stable or canary, not {to!r}")
        self._require_servable(name, version)
        failures = self.gate_failures(name, version)
        gate = self.info(name, version).gate
        if failures and not force:
            why = "was refused by the gate" if gate else "has not been through the gate"
            raise RegistryError(
                f"{name} version {version} {why}; run `imgclf models gate {name} {version} --data EVAL_DATA` "
                "(or promote with --force)"
            )
        with self._change(name) as state:
            if to == STABLE:
                self._set_stable(state, version, "promoted", **({"forced": True} if failures else {}))
            else:
                if state.stable == version:
                    raise RegistryError(f"{name} version {version} is already stable")
                if state.canary != version:
                    state.canary_since = _now()
                state.labels[CANARY] = version
                if canary_share is not None:
                    state.canary_share = _share(canary_share)
            if failures:
                record = {"to": to, "at": _now(), "gate": gate, "checks": failures}
                state.overrides.setdefault(str(version), []).append(record)
        return state

    def record_decision(self, name: str, decision: dict[str, Any], keep: int = 200) -> ModelState:
        """Append a retraining or canary decision (``{"kind", "version", "outcome", "reasons", ...}``)."""
        with self._change(name) as state:
            state.decisions.append({"at": _now(), **decision})
            del state.decisions[:-keep]
        return state

    def set_canary_share(self, name: str, share: float) -> ModelState:
        with self._change(name) as state:
            if state.canary is None and share > 0:
                raise RegistryError(f"{name} has no canary; promote a version with --to canary first")
            state.canary_share = _share(share)
        return state

    def rollback(self, name: str) -> ModelState:
        """End the canary if there is one; otherwise move stable back to the previous stable version."""
        with self._change(name) as state:
            if state.canary is not None:
                del state.labels[CANARY]
                state.canary_share = 0.0
                return state
            if len(state.history) < 2:
                raise RegistryError(f"{name} has no earlier stable version to roll back to")
            previous = state.history[-2]["version"]
            self._require_servable(name, previous)
            state.history.pop()
            state.labels[STABLE] = previous
        return state

    def label(self, name: str, version: int, label: str) -> ModelState:
        if not _LABEL.match(label) or label in (STABLE, CANARY):
            raise RegistryError(f"label {label!r}: use letters, digits and '_' (stable and canary: use promote)")
        self._require_servable(name, version)
        with self._change(name) as state:
            state.labels[label] = version
        return state

    def unlabel(self, name: str, label: str) -> ModelState:
        """Remove a label (ending a canary ends its share); stable stays: roll back or promote instead."""
        with self._change(name) as state:
            if label == STABLE:
                raise RegistryError(
                    f"unlabelling stable would leave {name} with no stable version; "
                    "use `imgclf models rollback` or promote another version"
                )
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
