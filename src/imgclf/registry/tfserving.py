"""Configuration files that let real TF Serving serve the registry as is.

``write_tfserving_config`` writes, into one directory:

* ``models.config`` — a ``ModelServerConfig`` text proto (``--model_config_file``): one entry per
  model, ``base_path`` = its registry directory, a ``specific`` version policy that loads the
  versions that may take traffic — every labelled version (TF Serving only assigns labels to
  loaded versions) and the previous stable (for an instant rollback) — and the registry's
  ``version_labels`` (``stable``, ``canary``, ...). Only versions whose files are whole are listed
  (``Registry.check``: the export's manifest, or a parseable ``saved_model.pb``), so a version
  being copied in or overwritten with garbage never reaches TF Serving; a stable version that
  cannot serve is replaced by the one before it. Versions nobody promoted are not listed: they are
  candidates. Start TF Serving with ``--allow_version_labels_for_unavailable_models`` unset (the
  default); every label points at a listed version.
* ``batching.config`` — ``--batching_parameters_file`` (TF Serving's text format).
* ``monitoring.config`` — ``--monitoring_config_file`` enabling Prometheus at
  ``/monitoring/prometheus/metrics`` (what deploy/prometheus/prometheus.yml scrapes).

``imgclf serve --model-config-file models.config`` reads the same file. Files are replaced
atomically and only when their content changes; ``watch_tfserving_config`` keeps them current
as the registry changes (run it beside a model server started with
``--model_config_file_poll_wait_seconds``: promote and rollback then reach it within seconds).

Example:
    >>> write_tfserving_config(Registry("registry"), Path("tfs"), base_path_prefix="/models")
    [PosixPath('tfs/models.config'), PosixPath('tfs/batching.config'), PosixPath('tfs/monitoring.config')]
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from imgclf.errors import ImgclfError, RegistryError
from imgclf.registry.store import STABLE, Registry
from imgclf.serving.options import TF_SERVING_BATCHING, BatchingParameters, validate_model_config

log = logging.getLogger(__name__)

MONITORING_CONFIG = 'prometheus_config {\n  enable: true\n  path: "/monitoring/prometheus/metrics"\n}\n'


def model_server_config(
    registry: Registry, base_path_prefix: str | None = None, names: list[str] | None = None
) -> model_server_config_pb2.ModelServerConfig:
    """The registry's models (or ``names``) with the versions to keep loaded and their labels.

    Loaded: the serving version, every labelled version and the previous stable (so a rollback is
    instant), each only if its files are whole.
    """
    names = names or registry.models()
    if not names:
        raise RegistryError(f"no models in {registry.root} yet: add one with imgclf export RUN --registry ...")
    config = model_server_config_pb2.ModelServerConfig()
    for name in names:
        state = registry.state(name)
        serving = registry.serving_version(name)
        labels = {label: version for label, version in state.labels.items() if registry.can_serve(name, version)}
        labels[STABLE] = serving  # stable itself if it can serve, else the stable before it
        previous = [h["version"] for h in state.history[-2:-1] if registry.can_serve(name, h["version"])]
        skipped = sorted(set(state.labels.values()) - set(labels.values()))
        if skipped:
            log.warning("%s: version(s) %s cannot serve and are left out of the model config", name, skipped)
        versions = sorted({serving, *labels.values(), *previous})
        model = config.model_config_list.config.add()
        model.name = name
        model.base_path = (
            f"{base_path_prefix.rstrip('/')}/{name}" if base_path_prefix else str((registry.root / name).resolve())
        )
        model.model_platform = "tensorflow"
        model.model_version_policy.specific.versions.extend(versions)
        for label, version in sorted(labels.items()):
            model.version_labels[label] = version
    validate_model_config(config, "generated models.config")
    return config


def batching_config(parameters: BatchingParameters) -> str:
    lines = [
        f"max_batch_size {{ value: {parameters.max_batch_size} }}",
        f"batch_timeout_micros {{ value: {parameters.batch_timeout_micros} }}",
        f"max_enqueued_batches {{ value: {parameters.max_enqueued_batches} }}",
        f"num_batch_threads {{ value: {parameters.num_batch_threads} }}",
    ]
    lines += [f"allowed_batch_sizes: {size}" for size in parameters.allowed_batch_sizes]
    return "\n".join(lines) + "\n"


def tfserving_config_files(
    registry: Registry, base_path_prefix: str | None = None, batching: BatchingParameters | None = None
) -> dict[str, str]:
    """The text of models.config, batching.config and monitoring.config, by file name."""
    batching = batching or TF_SERVING_BATCHING
    return {
        "models.config": text_format.MessageToString(model_server_config(registry, base_path_prefix)),
        "batching.config": batching_config(batching),
        "monitoring.config": MONITORING_CONFIG,
    }


def write_tfserving_config(
    registry: Registry,
    out: Path,
    base_path_prefix: str | None = None,
    batching: BatchingParameters | None = None,
) -> list[Path]:
    """Write models.config, batching.config and monitoring.config into ``out``; return their paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, text in tfserving_config_files(registry, base_path_prefix, batching).items():
        write_if_changed(out / name, text)
        paths.append(out / name)
    return paths


def write_if_changed(path: Path, text: str) -> bool:
    """Replace ``path`` atomically with ``text`` unless it already holds it; True if written.

    A model server polling the file never reads half of it.
    """
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    partial.write_text(text, encoding="utf-8")
    os.replace(partial, path)
    return True


def watch_tfserving_config(
    registry: Registry,
    out: Path,
    base_path_prefix: str | None = None,
    interval: float = 5.0,
    stop: threading.Event | None = None,
) -> None:
    """Rewrite the config files whenever the registry changes, every ``interval`` seconds, until ``stop``.

    A registry that cannot be read for a moment (a version being copied in) is logged and retried.
    """
    stop = stop or threading.Event()
    while True:
        try:
            out.mkdir(parents=True, exist_ok=True)
            for name, text in tfserving_config_files(registry, base_path_prefix).items():
                if write_if_changed(out / name, text):
                    log.info("wrote %s", out / name)
        except (ImgclfError, OSError) as error:
            log.warning("TF Serving config not updated: %s", error)
        if stop.wait(interval):
            return
