"""The model server needs only SavedModels: it never imports training or preprocessing code."""

from __future__ import annotations

import subprocess
import sys


def test_serving_does_not_import_preprocessing_or_modeling():
    code = (
        "import sys, imgclf.serving.server, imgclf.cli; "
        "print(sorted(m for m in sys.modules if m.startswith(('imgclf.preprocessing', 'imgclf.modeling', "
        "'imgclf.data', 'imgclf.export.'))))"
    )
    # (``import imgclf`` loads the empty ``imgclf.export`` package itself, so that ``imgclf.export`` can
    # be the API function; none of its modules.)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip().splitlines()[-1] == "[]"
