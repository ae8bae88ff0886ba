"""Keep TensorFlow's native start-up chatter off the terminal (unless ``--verbose``).

``TF_CPP_MIN_LOG_LEVEL=3`` silences TensorFlow's C++ logging (oneDNN notes, ``failed call to
cuInit``), but a few lines are written to the process's stderr before that logging is set up
(``All log messages before absl::InitializeLog() ...``, ``Could not find cuda drivers ...``).
``silence_tensorflow_startup`` wraps the first ``import tensorflow`` so that, while it runs, file
descriptor 2 points at ``/dev/null``; Python's own ``sys.stderr`` keeps writing to the terminal.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType
from typing import Any

from imgclf.logs import native_stderr_silenced


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        with native_stderr_silenced():
            self._loader.exec_module(module)


class _TensorFlowFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once: the real finders answer from now on
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def silence_tensorflow_startup() -> None:
    """Set TensorFlow's log level to errors-only-if-fatal and hide its first import's native output."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    if "tensorflow" not in sys.modules and not any(isinstance(f, _TensorFlowFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TensorFlowFinder())
