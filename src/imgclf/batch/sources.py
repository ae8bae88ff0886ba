"""What a batch job classifies: SOURCE → the list of inputs (path and, for a labelled manifest, label).

SOURCE is one of:

* a folder: every visible file under it, recursively (``imgclf.data.sources.expand_paths``, as
  ``imgclf predict`` reads folders); which files are images is decided later, by content;
* a glob (``photos/**/*.jpg``);
* a CSV manifest with a header: a ``path`` column and optionally a ``label`` column (other columns
  are ignored). Relative paths are relative to the manifest; a path may repeat (each row is one
  input); a listed file that does not exist becomes an error row, not a failed job;
* a URI that pyarrow's filesystems read (``s3://bucket/prefix``, ``gs://…``): every file under it.

Local paths are made absolute, so a row says which file it was wherever the job ran, and a resumed
job recognises what it has done. The list is built by the driver before Ray starts, so a wrong
SOURCE answers at once.

Example:
    >>> inputs = list_inputs("catalogue.csv")
    >>> inputs.paths[0], inputs.labels[0]
    ('/data/photos/0001.jpg', 'dogs')
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from imgclf.data.sources import expand_paths
from imgclf.errors import DatasetError


@dataclass(frozen=True)
class BatchInputs:
    paths: list[str]
    labels: list[str] | None  # None: no labels (a folder, a glob, a manifest without a label column)
    kind: str  # "folder", "glob", "manifest" or "uri"


def is_uri(text: str) -> bool:
    return "://" in text and not text.startswith("file://")


def list_inputs(source: str | Path) -> BatchInputs:
    """The inputs SOURCE names (module docstring); ``DatasetError`` in one line if it names none."""
    text = str(source)
    if is_uri(text):
        return BatchInputs(_list_uri(text), None, "uri")
    text = text.removeprefix("file://")
    path = Path(text).expanduser()
    if path.is_file() and path.suffix.lower() == ".csv":
        return _read_manifest(path)
    kind = "folder" if path.is_dir() else "glob"
    if kind == "glob" and not any(char in text for char in "*?[") and not path.exists():
        raise DatasetError(f"no such file, folder or manifest: {source}")
    return BatchInputs([os.path.abspath(p) for p in expand_paths([text])], None, kind)


def _read_manifest(path: Path) -> BatchInputs:
    base = path.resolve().parent
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [(name or "").strip().lower() for name in (reader.fieldnames or [])]
            if "path" not in header:
                raise DatasetError(f"manifest {path} has no 'path' column (expected a header: path[,label])")
            reader.fieldnames = header
            rows = [(row.get("path") or "", row.get("label")) for row in reader]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"manifest {path} is not UTF-8 text: {exc.reason}") from None
    except csv.Error as exc:
        raise DatasetError(f"manifest {path} is not valid CSV: {exc}") from None
    if not rows:
        raise DatasetError(f"manifest {path} lists no files")
    paths = []
    for line, (value, _) in enumerate(rows, start=2):
        value = value.strip()
        if not value:
            raise DatasetError(f"manifest {path} line {line}: empty path")
        file = Path(value).expanduser()
        paths.append(value if is_uri(value) else os.path.abspath(file if file.is_absolute() else base / file))
    labels = [(label or "").strip() for _, label in rows] if "label" in header else None
    return BatchInputs(paths, labels, "manifest")


def _list_uri(uri: str) -> list[str]:
    from pyarrow import fs

    try:
        filesystem, root = fs.FileSystem.from_uri(uri)
        info = filesystem.get_file_info(root)
        if info.type == fs.FileType.File:
            return [uri]
        if info.type != fs.FileType.Directory:
            raise DatasetError(f"nothing at {uri}")
        found = filesystem.get_file_info(fs.FileSelector(root, recursive=True))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot list {uri}: {exc}") from None
    scheme = uri.split("://", 1)[0]
    files = sorted(f"{scheme}://{item.path}" for item in found if item.type == fs.FileType.File)
    if not files:
        raise DatasetError(f"no files under {uri}")
    return files


def read_input(path: str, max_bytes: int) -> tuple[bytes | None, int]:
    """The file's bytes and size; bytes are None when it is larger than ``max_bytes`` (never read)."""
    if is_uri(path):
        from pyarrow import fs

        filesystem, inner = fs.FileSystem.from_uri(path)
        size = filesystem.get_file_info(inner).size or 0
        if size > max_bytes:
            return None, size
        with filesystem.open_input_stream(inner) as stream:
            data = stream.read()
        return data, len(data)
    size = os.stat(path).st_size
    if size > max_bytes:
        return None, size
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)  # a file growing meanwhile is still refused, never read whole
    return data, len(data)
