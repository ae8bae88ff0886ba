"""The model server needs only SavedModels: it never imports training or preprocessing code."""

from __future__ import annotations

import subprocess
import sys


def test_serving_does_not_import_preprocessing_or_modeling():
    code = (
        "import sys, imgclf.serving.server, imgclf.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('imgclf.preprocessing', 'imgclf.modeling', "
        "'imgclf.data', 'imgclf.export'))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
