"""Which versions of which models are loaded: polling, version policies, labels and status.

Follows TF Serving's ``ServerCore`` with the ``AvailabilityPreservingPolicy``: each model's base
path is polled for integer version directories; the versions the policy wants (latest N, all, or
specific) are loaded in the background, warmed up from ``assets.extra``, and marked AVAILABLE;
only then are versions the policy no longer wants unloaded. A version that fails to load never
displaces one that serves, whatever the policy names: while no wanted version is AVAILABLE, the
newest loaded one stays (so a broken newest version, or a ``specific`` policy naming only a broken
one, leaves the previous version serving, where TF Serving could serve nothing).

Before loading, a version's files are checked (``imgclf.contract.check_export``: the export's
manifest, or a parseable ``saved_model.pb``), so a directory still being copied is not loaded
half-way. A failed version is reported as END with its error (status, log, the
``:imgclf:serving:failed_versions`` gauge) and retried when its directory changes: at once for a
version whose files were incomplete, after a backoff that doubles per failed load (from
``retry_backoff_seconds`` up to ``MAX_RETRY_BACKOFF_SECONDS``) for one that TensorFlow refused.

Example:
    >>> manager = ModelManager(load_model_config(options), ServingMetrics())
    >>> manager.poll_once()
    >>> manager.servable("cats_dogs").version
    3
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tensorflow_serving.config import file_system_storage_path_source_pb2, model_server_config_pb2

from imgclf.contract import TFLITE_FILE, check_export, directory_fingerprint, version_directories
from imgclf.errors import ServingError
from imgclf.serving.litert import LiteRTServableVersion
from imgclf.serving.metrics import ServingMetrics
from imgclf.serving.options import validate_model_config
from imgclf.serving.servable import ServableVersion

log = logging.getLogger(__name__)

ModelConfig = model_server_config_pb2.ModelConfig
VersionPolicy = file_system_storage_path_source_pb2.FileSystemStoragePathSourceConfig.ServableVersionPolicy

START, LOADING, AVAILABLE, END = "START", "LOADING", "AVAILABLE", "END"
MAX_RETRY_BACKOFF_SECONDS = 60.0
__all__ = ["ModelManager", "VersionStatus", "aspired_versions", "version_directories"]


@dataclass
class VersionStatus:
    """One version's state as ``GetModelStatus`` reports it."""

    version: int
    state: str = START
    error_code: str = "OK"
    error_message: str = ""
    servable: ServableVersion | None = None
    failed_loads: int = 0  # TensorFlow refused it this many times in a row (sets the retry backoff)
    fingerprint: Any = None  # the directory's files when it last failed
    retry_after: float = 0.0  # monotonic time before which a changed directory is not retried

    @property
    def failed(self) -> bool:
        return self.error_code != "OK"


class _Model:
    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self.versions: dict[int, VersionStatus] = {}
        self.labels: dict[str, int] = dict(config.version_labels)
        self.retries: dict[int, int] = {}  # version → failed loads before its directory changed
        self.kept: int | None = None  # the version kept serving although the policy no longer wants it


def aspired_versions(policy: VersionPolicy, found: list[int]) -> set[int]:
    """The versions a ``model_version_policy`` wants, out of those on disk."""
    choice = policy.WhichOneof("policy_choice")
    if choice == "all":
        return set(found)
    if choice == "specific":
        return set(found) & set(policy.specific.versions)
    count = policy.latest.num_versions if choice == "latest" and policy.latest.num_versions else 1
    return set(sorted(found)[-count:])


class ModelManager:
    """The loaded models. Thread-safe; one background thread polls the file system."""

    def __init__(
        self,
        config: model_server_config_pb2.ModelServerConfig,
        metrics: ServingMetrics,
        *,
        enable_warmup: bool = True,
        warmup_iterations: int = 1,
        on_unload: Callable[[str, int], None] | None = None,
        retry_backoff_seconds: float = 1.0,
        prefer_tflite_model: bool = False,
        tflite_threads: int | None = None,
    ) -> None:
        validate_model_config(config)
        self.prefer_tflite_model = prefer_tflite_model
        self.tflite_threads = tflite_threads
        self.metrics = metrics
        self.enable_warmup = enable_warmup
        self.warmup_iterations = warmup_iterations
        self.retry_backoff_seconds = retry_backoff_seconds
        self.on_unload = on_unload
        self._lock = threading.RLock()  # guards _models and the VersionStatus objects
        self._sync_lock = threading.Lock()  # one load/unload pass at a time
        self._models: dict[str, _Model] = {m.name: _Model(m) for m in config.model_config_list.config}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lookups

    def servable(self, name: str, version: int | None = None, label: str | None = None) -> ServableVersion:
        """The version a request addresses: a number, a label, or the highest AVAILABLE one."""
        with self._lock:
            model = self._models.get(name)
            if label:
                if model is None or label not in model.labels:
                    raise ServingError("INVALID_ARGUMENT", f"Unrecognized servable version label: {label}")
                version = model.labels[label]
            if model is not None:
                available = {v: s for v, s in model.versions.items() if s.state == AVAILABLE and s.servable}
                if version is None and available:
                    return available[max(available)].servable  # type: ignore[return-value]
                if version in available:
                    return available[version].servable  # type: ignore[return-value]
        request = f"Latest({name})" if version is None else f"Specific({name}, {version})"
        raise ServingError("NOT_FOUND", f"Servable not found for request: {request}")

    def status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """Version statuses, newest first, as ``GetModelStatus`` returns them."""
        if not name:
            raise ServingError("INVALID_ARGUMENT", "Missing model name in request.")
        with self._lock:
            model = self._models.get(name)
            if model is None or not model.versions:
                raise ServingError("NOT_FOUND", f"Could not find any versions of model {name}")
            if version is not None:
                if version not in model.versions:
                    raise ServingError("NOT_FOUND", f"Could not find version {version} of model {name}")
                return [_copy(model.versions[version])]
            return [_copy(model.versions[v]) for v in sorted(model.versions, reverse=True)]

    def model_names(self) -> list[str]:
        with self._lock:
            return list(self._models)

    def labels(self, name: str) -> dict[str, int]:
        """A model's version labels (label → version); empty for an unknown model."""
        with self._lock:
            model = self._models.get(name)
            return dict(model.labels) if model is not None else {}

    def is_ready(self) -> bool:
        """True when every configured model has an AVAILABLE version."""
        with self._lock:
            return all(any(s.state == AVAILABLE for s in m.versions.values()) for m in self._models.values())

    def loaded_versions(self) -> list[ServableVersion]:
        with self._lock:
            return [s.servable for m in self._models.values() for s in m.versions.values() if s.servable]

    # ------------------------------------------------------------ config

    def reload_config(self, config: model_server_config_pb2.ModelServerConfig) -> None:
        """Replace the configuration (``HandleReloadConfigRequest``): models absent from it unload."""
        validate_model_config(config)
        new = {m.name: m for m in config.model_config_list.config}
        with self._sync_lock:
            with self._lock:
                removed = [self._models.pop(name) for name in list(self._models) if name not in new]
                old_labels = {name: dict(model.labels) for name, model in self._models.items()}
                for name, model_config in new.items():
                    if name in self._models:
                        self._models[name].config = model_config
                    else:
                        self._models[name] = _Model(model_config)
            for model in removed:
                for status in list(model.versions.values()):
                    self._unload(model.config.name, status)
            self._sync_all()
            with self._lock:
                for name, model_config in new.items():
                    model = self._models[name]
                    for version in model_config.version_labels.values():
                        if not self._available(model, version):
                            model.labels = old_labels.get(name, {})
                            raise ServingError(
                                "FAILED_PRECONDITION",
                                f"Request to assign label to version {version} of model {name}, "
                                "which is not currently available for inference",
                            )
                    model.labels = dict(model_config.version_labels)

    # ------------------------------------------------------------ polling

    def poll_once(self) -> None:
        """Scan every base path once: load wanted versions, then unload unwanted ones."""
        with self._sync_lock:
            self._sync_all()

    def start_polling(self, interval_seconds: float) -> None:
        """Poll in a daemon thread every ``interval_seconds`` (TF Serving's default is 1 s)."""
        if interval_seconds <= 0:
            return

        def loop() -> None:
            while not self._stop.wait(interval_seconds):
                try:
                    self.poll_once()
                except Exception:  # keep polling; one bad pass must not stop version updates
                    log.exception("file-system poll failed")

        self._thread = threading.Thread(target=loop, name="imgclf-fs-poll", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ------------------------------------------------------------ internals

    def _sync_all(self) -> None:
        with self._lock:
            models = list(self._models.values())
        for model in models:
            self._sync_model(model)

    def _sync_model(self, model: _Model) -> None:
        name = model.config.name
        base = Path(model.config.base_path)
        found = version_directories(base)
        self._forget_failures(model, base, found)
        policy = model.config.model_version_policy
        while True:
            with self._lock:
                failed = {v for v, s in model.versions.items() if s.failed}
                # Failed versions drop out of the policy's choice, so "latest" falls back to the newest
                # version that works instead of leaving the model with nothing to serve.
                wanted = aspired_versions(policy, [v for v in found if v not in failed])
                to_load = [v for v in sorted(wanted, reverse=True) if self._needs_load(model, v)]
                for version in to_load:
                    model.versions[version] = VersionStatus(version)
            if not to_load:
                break
            for version in to_load:
                self._load(model, version, base / str(version))
        with self._lock:
            loaded = [s for s in model.versions.values() if s.state == AVAILABLE]
            unwanted = [s for s in loaded if s.version not in wanted]
            if found and unwanted and not any(s.version in wanted for s in loaded):
                # Availability first: until a wanted version serves, the newest loaded one keeps
                # serving (preferring one whose directory is still there).
                keep = max(unwanted, key=lambda s: (s.version in found, s.version))
                unwanted.remove(keep)
                if model.kept != keep.version:  # said once, not on every poll
                    log.warning("%s version %d keeps serving: no version the policy wants is available",
                                name, keep.version)  # fmt: skip
                model.kept = keep.version
            else:
                model.kept = None
            named = aspired_versions(policy, found)  # a failure counts while the policy still names it
            failures = sum(1 for s in model.versions.values() if s.failed and s.version in named)
        self.metrics.failed_versions.labels(name).set(failures)
        for status in sorted(unwanted, key=lambda s: s.version):
            self._unload(name, status)

    def _forget_failures(self, model: _Model, base: Path, found: list[int]) -> None:
        """Failed versions whose directory went away or changed are forgotten, so they are tried again."""
        now = time.monotonic()
        with self._lock:
            failed = [s for s in model.versions.values() if s.failed]
        for status in failed:
            if status.version not in found:
                changed = True
            elif now < status.retry_after:
                continue
            else:
                changed = directory_fingerprint(base / str(status.version)) != status.fingerprint
            if changed:
                with self._lock:
                    if model.versions.get(status.version) is status:
                        del model.versions[status.version]
                        if status.version in found:
                            log.info("%s version %d changed on disk; trying it again", model.config.name,
                                     status.version)  # fmt: skip
                            model.retries[status.version] = status.failed_loads

    @staticmethod
    def _needs_load(model: _Model, version: int) -> bool:
        status = model.versions.get(version)
        return status is None or (status.state == END and not status.failed)

    def _load(self, model: _Model, version: int, path: Path) -> None:
        name = model.config.name
        status = model.versions[version]
        fingerprint = directory_fingerprint(path)
        check = check_export(path)
        if not check.complete:  # still being copied, or damaged: not worth a TensorFlow load
            message = f"the version's files are not whole: {check.reason}"
            log.warning("not loading %s version %d: %s", name, version, message)
            with self._lock:
                status.state, status.error_code, status.error_message = END, "FAILED_PRECONDITION", message
                status.fingerprint, status.failed_loads = fingerprint, model.retries.pop(version, 0)
            return
        with self._lock:
            status.state = LOADING
        log.info("loading %s version %d from %s", name, version, path)
        started = time.perf_counter()
        servable = None
        try:
            servable = self._load_litert(path, name, version) if self.prefer_tflite_model else None
            if servable is None:
                servable = ServableVersion.load(path, name, version)
                if self.enable_warmup:
                    self._warm_up(servable)
            self.metrics.load_attempt_count.labels(str(path), "success").inc()
            self.metrics.load_latency.labels(str(path)).inc((time.perf_counter() - started) * 1e6)
        except Exception as error:
            code = error.code if isinstance(error, ServingError) else "UNKNOWN"
            message = error.message if isinstance(error, ServingError) else f"{type(error).__name__}: {error}"
            if servable is None:
                self.metrics.load_attempt_count.labels(str(path), "fail").inc()
            failed_loads = model.retries.pop(version, 0) + 1
            backoff = min(self.retry_backoff_seconds * 2 ** (failed_loads - 1), MAX_RETRY_BACKOFF_SECONDS)
            log.error("failed to load %s version %d (retried when its files change, after %.1f s): %s",
                      name, version, backoff, message)  # fmt: skip
            with self._lock:
                status.state, status.error_code, status.error_message = END, code, message
                status.fingerprint, status.failed_loads = fingerprint, failed_loads
                status.retry_after = time.monotonic() + backoff
            return
        model.retries.pop(version, None)
        with self._lock:
            status.servable, status.state = servable, AVAILABLE
        log.info("%s version %d is AVAILABLE (%.1f s)", name, version, time.perf_counter() - started)

    def _load_litert(self, path: Path, name: str, version: int) -> ServableVersion | None:
        """``--prefer-tflite-model``: the version served by its ``model.tflite`` when it has one that
        loads and warms up; otherwise None (the SavedModel serves, and a broken ``.tflite`` never
        takes traffic: the failure is logged)."""
        if not (path / TFLITE_FILE).is_file():
            return None
        try:
            servable = LiteRTServableVersion.load(path, name, version, self.tflite_threads)
            if self.enable_warmup:
                self._warm_up(servable)
        except Exception as error:
            message = error.message if isinstance(error, ServingError) else f"{type(error).__name__}: {error}"
            log.error("%s version %d: %s cannot serve (%s); serving its SavedModel instead",
                      name, version, TFLITE_FILE, message)  # fmt: skip
            return None
        log.info("%s version %d is served by LiteRT from %s", name, version, TFLITE_FILE)
        return servable

    def _warm_up(self, servable: ServableVersion) -> None:
        started = time.perf_counter()
        try:
            count = servable.warm_up(self.warmup_iterations)
        except ServingError as error:
            self.metrics.warmup_latency.labels(str(servable.path), error.code).observe(
                (time.perf_counter() - started) * 1e6
            )
            raise ServingError(error.code, f"Failed to warm up model {servable.name}: {error.message}") from None
        if count:
            self.metrics.warmup_latency.labels(str(servable.path), "OK").observe((time.perf_counter() - started) * 1e6)

    def _unload(self, name: str, status: VersionStatus) -> None:
        with self._lock:  # UNLOADING is never observable: dropping the reference is instant
            status.servable = None  # in-flight requests keep their own reference until they finish
            status.state = END
        if self.on_unload is not None:
            self.on_unload(name, status.version)
        log.info("unloaded %s version %d", name, status.version)

    @staticmethod
    def _available(model: _Model, version: int) -> bool:
        status = model.versions.get(version)
        return status is not None and status.state == AVAILABLE


def _copy(status: VersionStatus) -> VersionStatus:
    return VersionStatus(status.version, status.state, status.error_code, status.error_message)
