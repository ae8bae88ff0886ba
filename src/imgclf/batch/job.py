"""A batch inference job: SOURCE → one row per input in OUT, on Ray Data (embedded, or any Ray cluster).

The driver (this process) lists the inputs, resolves the model, and builds a dataset of paths (and
labels); ``map_batches`` runs ``SignatureClassifier`` as one actor pool (each actor loads the export
once and reads, checks and classifies its batches: image bytes never travel through Ray's object
store); the driver streams the result rows back, writes whole part files, and ends with a summary.

Ray: embedded by default (``ray.init`` starts a local instance in-process: this machine's CPUs, no
dashboard, node address 127.0.0.1, an object store sized for the machine, stopped at the end). Ray
2.60's servers still listen on every interface (it has no bind-address option); its token
authentication, on by default, is what keeps others out. With
``address`` (or ``RAY_ADDRESS``) the same job runs on that cluster; every node must reach SOURCE
and the registry at the same paths (a shared volume, or URIs such as ``s3://``), and have imgclf
installed. A Ray already initialised in this process (a notebook's) is used as it is.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from imgclf.batch import output
from imgclf.batch.classifier import ClassifierSpec, SignatureClassifier, class_names
from imgclf.batch.sources import list_inputs
from imgclf.contract import read_model_card
from imgclf.data.image_validation import UploadLimits
from imgclf.errors import ConfigError, ExportError
from imgclf.logs import native_stderr_silenced
from imgclf.registry.reference import resolve_reference

# Without --verbose: Ray's notes on token authentication (on by default: kept) and on progress bars
# (this module draws its own), and its C++ log lines on stderr (an actor's constructor in the object
# store, a note for restartable actors, which these are).
QUIET_LOGGERS = ("ray._private.authentication.authentication_token_setup", "ray.data._internal.progress")
QUIET_NATIVE_LOGS = {"RAY_BACKEND_LOG_LEVEL": "fatal"}

Progress = Callable[[int, int], object]  # (rows done in this run, rows this run has to do)


@dataclass(frozen=True)
class BatchResult:
    out: Path
    images: int  # rows written by this run
    errors: int  # of which error rows
    skipped: int  # inputs a resumed job found already done
    wall_s: float  # this run, from the call to the last part written (Ray's start included)
    summary: dict[str, Any] = field(default_factory=dict)  # over the whole output (also earlier runs)

    @property
    def images_per_s(self) -> float:
        return self.images / self.wall_s if self.wall_s else 0.0


def predict_batch(
    source: str | Path,
    model: str | Path,
    out: str | Path,
    *,
    fmt: str = "parquet",
    batch_size: int = 32,
    concurrency: int | None = None,
    address: str | None = None,
    resume: bool = False,
    rows_per_file: int = 10_000,
    cpus_per_actor: int = 1,
    limits: UploadLimits | None = None,
    progress: Progress | None = None,
    verbose: bool = False,
) -> BatchResult:
    """Classify every input of ``source`` with ``model`` (``REGISTRY/NAME[/VERSION|@LABEL]``) into ``out``."""
    started = time.perf_counter()
    output.check_format(fmt)
    counts = (("--batch-size", batch_size), ("--concurrency", concurrency), ("--rows-per-file", rows_per_file))
    for name, value in counts:
        if value is not None and value < 1:
            raise ConfigError(f"invalid {name} {value}: must be at least 1")
    reference = resolve_reference(model)
    classes = class_names(reference.path) or _card_classes(reference.path)
    inputs = list_inputs(source)
    labelled = inputs.labels is not None
    spec = ClassifierSpec(
        str(reference.path), reference.name, reference.version, tuple(classes),
        limits or UploadLimits.from_settings(), cpus_per_actor, labelled,
    )  # fmt: skip
    out = Path(out).expanduser()
    job = {"source": str(source), "model": reference.name, "version": reference.version, "format": fmt,
           "classes": classes, "labelled": labelled}  # fmt: skip
    done = output.prepare(out, fmt, job, resume)
    skipped = sum(done.values())
    todo = _remaining(inputs.paths, inputs.labels, done)
    writer = output.PartWriter(out, fmt, rows_per_file)
    images = errors = 0
    try:
        if todo[0]:
            with _ray(address, verbose) as ray:
                for table in _results(ray, spec, todo, batch_size, concurrency, cpus_per_actor):
                    writer.add(table)
                    images += table.num_rows
                    errors += sum(1 for e in table.column("error").to_pylist() if e)
                    if progress is not None:
                        progress(images, len(todo[0]))
    finally:
        writer.flush()  # whole rows received before an interrupt are kept: a resume skips them
    summary = output.summarize(out, fmt, classes)
    wall = time.perf_counter() - started
    summary["last_run"] = {"images": images, "errors": errors, "skipped": skipped, "wall_s": round(wall, 3),
                           "images_per_s": round(images / wall, 3) if wall else 0.0}  # fmt: skip
    output.write_summary(out, summary)
    return BatchResult(out, images, errors, skipped, wall, summary)


def _card_classes(version_dir: Path) -> list[str]:
    classes = read_model_card(version_dir).get("classes") or []
    if not classes:
        raise ExportError(f"{version_dir} has neither assets/labels.txt nor classes in its model card")
    return [str(name) for name in classes]


def _remaining(
    paths: list[str], labels: list[str] | None, done: dict[str, int]
) -> tuple[list[str], list[str] | None]:
    """The inputs still to do: each path's first ``done[path]`` occurrences are skipped."""
    left = dict(done)
    keep = []
    for index, path in enumerate(paths):
        if left.get(path, 0) > 0:
            left[path] -= 1
        else:
            keep.append(index)
    return [paths[i] for i in keep], None if labels is None else [labels[i] for i in keep]


def _results(
    ray: Any, spec: ClassifierSpec, todo: tuple[list[str], list[str] | None], batch_size: int,
    concurrency: int | None, cpus_per_actor: int,
) -> Iterator[Any]:  # fmt: skip
    import pyarrow as pa
    import ray.data

    paths, labels = todo
    columns = {"path": pa.array(paths, pa.string())}
    if labels is not None:
        columns["true_label"] = pa.array([label or None for label in labels], pa.string())
    if concurrency is None:
        concurrency = max(1, int(ray.cluster_resources().get("CPU", 1)) // cpus_per_actor)
    # Blocks of a few batches: every actor stays busy, the progress moves, and a block in flight is little work.
    blocks = max(concurrency, min(math.ceil(len(paths) / (2 * batch_size)), 2000))
    dataset = ray.data.from_arrow(pa.table(columns), override_num_blocks=min(blocks, len(paths)))
    classified = dataset.map_batches(
        SignatureClassifier.bind(spec),
        batch_size=batch_size,
        batch_format="pyarrow",
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=cpus_per_actor,
    )
    yield from classified.iter_batches(batch_size=None, batch_format="pyarrow")


def object_store_bytes() -> int:
    """Embedded Ray's object store: 10% of this machine's memory, between 512 MiB and 4 GiB.

    It only carries paths and result rows (image bytes are read by the actors themselves), so a
    small store is plenty and leaves the memory to TensorFlow.
    """
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return int(min(max(total // 10, 512 << 20), 4 << 30))


@contextmanager
def _ray(address: str | None, verbose: bool) -> Iterator[Any]:
    import ray
    import ray.data

    if ray.is_initialized():  # the caller's own Ray (a notebook's): used, left running
        yield ray
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    level = logging.INFO if verbose else logging.WARNING
    if not verbose:  # notes a user cannot act on; --verbose shows them
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
    try:
        quiet_native = nullcontext() if verbose else native_stderr_silenced()  # Ray's C++ start-up line
        with _environment({} if verbose else QUIET_NATIVE_LOGS), quiet_native:
            _init(ray, address, level, verbose)
    except (ConnectionError, RuntimeError, ValueError, OSError) as error:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise ConfigError(f"cannot start or reach {where}: {str(error).strip().splitlines()[0]}") from None
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the caller shows its own
        logging.getLogger("ray.data").setLevel(level)
        yield ray
    finally:
        ray.shutdown()


def _init(ray: Any, address: str | None, level: int, verbose: bool) -> None:
    if address:
        ray.init(address=address, logging_level=level, log_to_driver=verbose)
    else:
        ray.init(
            address="local",
            _node_ip_address="127.0.0.1",  # its processes find each other on loopback
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            object_store_memory=object_store_bytes(),
            logging_level=level,
            log_to_driver=verbose,
        )


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """``values`` set in ``os.environ`` meanwhile (those the user set win), then restored."""
    added = {key: value for key, value in values.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)
