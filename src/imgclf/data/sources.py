"""Where labelled images come from: a class-per-folder tree or a CSV manifest.

Accepted layouts:

* ``ROOT/<class>/<image>`` — no splits;
* ``ROOT/<split>/<class>/<image>`` with split folders named ``train``, ``val``/``validation``/
  ``valid`` or ``test`` (any case);
* a CSV manifest with columns ``path,label[,split]``; relative paths are relative to the CSV's
  folder, like Keras' ``flow_from_dataframe`` with a ``directory``.

Files below a class folder are found recursively; hidden files and folders are skipped. Whether
a file really is an image is decided later by content (``imgclf.data.inspection``), never by its
extension.

Example:

>>> dataset = load_dataset("data/flowers")
>>> dataset.classes, dataset.split_names
(['daisy', 'dandelion', 'roses', 'sunflowers', 'tulips'], ['train', 'val'])
"""

from __future__ import annotations

import csv
import glob
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from imgclf.errors import DatasetError

SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
SPLIT_ORDER = ("train", "val", "test")
MANIFEST_COLUMNS = ("path", "label", "split")


@dataclass(frozen=True)
class Sample:
    """One labelled file. ``split`` is ``train``, ``val``, ``test`` or None (not yet split)."""

    path: Path
    label: str
    split: str | None = None


@dataclass
class Dataset:
    """A list of labelled files and where they came from."""

    root: Path
    kind: str  # "folder" or "csv"
    samples: list[Sample] = field(default_factory=list)

    @property
    def classes(self) -> list[str]:
        return sorted({s.label for s in self.samples})

    @property
    def split_names(self) -> list[str]:
        present = {s.split for s in self.samples if s.split is not None}
        return [name for name in SPLIT_ORDER if name in present]

    @property
    def has_splits(self) -> bool:
        return any(s.split is not None for s in self.samples)

    def subset(self, split: str) -> Dataset:
        """The samples of one split (``val`` also answers to ``validation`` and ``valid``)."""
        canonical = SPLIT_ALIASES.get(split.lower())
        if canonical is None:
            raise DatasetError(f"unknown split {split!r}; use one of train, val, test")
        chosen = [s for s in self.samples if s.split == canonical]
        if not chosen:
            found = ", ".join(self.split_names) or "none"
            raise DatasetError(f"{self.root} has no {canonical!r} split (splits found: {found})")
        return Dataset(self.root, self.kind, chosen)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and class: ``{"train": {"cats": 1000, ...}, ...}``; ``all`` if unsplit."""
        table: dict[str, Counter[str]] = {}
        for sample in self.samples:
            table.setdefault(sample.split or "all", Counter())[sample.label] += 1
        return {split: dict(sorted(counter.items())) for split, counter in table.items()}


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# OWASP CSV injection: a cell starting with one of these is a formula to a spreadsheet. Such labels
# are written with a leading apostrophe, and so is a label that starts with one, so reading strips
# exactly one and gives the label back unchanged.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def check_label(label: str, where: str) -> str:
    """A class name as it may enter training: no control characters (a line break in a label would
    add a class to the export's labels.txt), not empty."""
    if not label.strip():
        raise DatasetError(f"{where}: empty label")
    if _CONTROL.search(label):
        raise DatasetError(f"{where}: the label {label!r} contains a control character (line break, tab, NUL...)")
    return label


def escape_cell(value: str) -> str:
    """``value`` as a CSV cell no spreadsheet runs as a formula (``unescape_cell`` reverses it)."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def unescape_cell(value: str) -> str:
    return value[1:] if value.startswith("'") and value[1:].startswith(_FORMULA_STARTS) else value


def load_dataset(path: str | Path) -> Dataset:
    """Read a folder tree or a CSV manifest; raise DatasetError with a one-line reason if unusable."""
    root = Path(path).expanduser()
    if not root.exists():
        raise DatasetError(f"dataset path does not exist: {root}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise DatasetError(f"{root} is a file but not a .csv manifest")
        dataset = _load_manifest(root)
    else:
        dataset = _load_folder(root)
    if not dataset.samples:
        raise DatasetError(f"no files found in {root}")
    return dataset


def _visible(path: Path) -> bool:
    return not path.name.startswith(".")


def _files_under(folder: Path) -> list[Path]:
    found = []
    for item in sorted(folder.rglob("*")):
        relative = item.relative_to(folder)
        if item.is_file() and all(_visible(Path(part)) for part in relative.parts):
            found.append(item.resolve())
    return found


def _class_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _load_folder(root: Path) -> Dataset:
    subfolders = _class_folders(root)
    if not subfolders:
        raise DatasetError(f"{root} has no class folders (expected ROOT/<class>/<image files>)")
    split_folders = [p for p in subfolders if p.name.lower() in SPLIT_ALIASES]
    samples: list[Sample] = []
    if split_folders:
        seen_splits: dict[str, Path] = {}
        for split_folder in split_folders:
            split = SPLIT_ALIASES[split_folder.name.lower()]
            if split in seen_splits:
                raise DatasetError(
                    f"{root} has two folders for the {split!r} split: {seen_splits[split].name} and {split_folder.name}"
                )
            seen_splits[split] = split_folder
            for class_folder in _class_folders(split_folder):
                label = check_label(class_folder.name, f"folder {class_folder}")
                samples += [Sample(f, label, split) for f in _files_under(class_folder)]
    else:
        for class_folder in subfolders:
            label = check_label(class_folder.name, f"folder {class_folder}")
            samples += [Sample(f, label, None) for f in _files_under(class_folder)]
    return Dataset(root.resolve(), "folder", samples)


def _load_manifest(csv_path: Path) -> Dataset:
    base = csv_path.resolve().parent
    try:
        with csv_path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = [name.strip().lower() for name in (reader.fieldnames or [])]
            missing = [c for c in ("path", "label") if c not in header]
            if missing:
                raise DatasetError(
                    f"manifest {csv_path} is missing column(s): {', '.join(missing)} (expected path,label[,split])"
                )
            rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except UnicodeDecodeError as exc:
        raise DatasetError(f"manifest {csv_path} is not UTF-8 text: {exc.reason}") from None
    except csv.Error as exc:
        raise DatasetError(f"manifest {csv_path} is not valid CSV: {exc}") from None

    samples: list[Sample] = []
    absent: list[str] = []
    for line_number, row in enumerate(rows, start=2):
        if not row.get("path") or not row.get("label"):
            raise DatasetError(f"manifest {csv_path} line {line_number}: empty path or label")
        file_path = Path(row["path"]).expanduser()
        file_path = (file_path if file_path.is_absolute() else base / file_path).resolve()
        if not file_path.is_file():
            absent.append(row["path"])
            continue
        split_value = row.get("split") or None
        split = None
        if split_value is not None:
            split = SPLIT_ALIASES.get(split_value.lower())
            if split is None:
                raise DatasetError(
                    f"manifest {csv_path} line {line_number}: unknown split {split_value!r} (use train, val or test)"
                )
        label = check_label(unescape_cell(row["label"]), f"manifest {csv_path} line {line_number}")
        samples.append(Sample(file_path, label, split))
    if absent:
        raise DatasetError(f"manifest {csv_path} lists {len(absent)} missing file(s), first: {absent[0]}")
    return Dataset(base, "csv", samples)


def expand_paths(arguments: list[str | Path]) -> list[Path]:
    """Files named by ``arguments``: files as given, folders searched recursively (hidden files
    skipped), glob patterns (``*``, ``?``, ``[...]``, ``**``) expanded. Which files are images is
    decided later, by content. An argument that matches nothing raises DatasetError."""
    found: list[Path] = []
    for argument in arguments:
        path = Path(argument).expanduser()
        if path.is_dir():
            matched = _files_under(path)
        elif path.exists():
            matched = [path]
        elif any(char in str(argument) for char in "*?["):
            matched = sorted(Path(p) for p in glob.glob(str(path), recursive=True) if Path(p).is_file())
        else:
            raise DatasetError(f"no such file or folder: {argument}")
        if not matched:
            raise DatasetError(f"no files in {argument}")
        found += matched
    return found


def write_manifest(samples: list[Sample], csv_path: str | Path, absolute: bool = False) -> Path:
    """Write samples as a ``path,label,split`` CSV that ``load_dataset`` reads back.

    Paths are written relative to the CSV's folder when the file lies below it (so the folder can
    be moved as a whole), otherwise, or with ``absolute``, as absolute paths.
    """
    out = Path(csv_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    base = out.parent.resolve()
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")  # \n like every text file here, not CSV's \r\n
        writer.writerow(MANIFEST_COLUMNS)
        for sample in samples:
            shown = sample.path.resolve()
            if not absolute and shown.is_relative_to(base):
                shown = shown.relative_to(base)
            writer.writerow([shown.as_posix(), escape_cell(sample.label), sample.split or ""])
    tmp.replace(out)
    return out
