"""The export contract (issue 18): one module owns the layout of a version directory, and nothing
else in the project spells it out again."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from imgclf import contract
from imgclf.errors import ExportError

SRC = Path(contract.__file__).parent
# Literal names of the export's layout; outside imgclf/contract.py they may appear only where they
# mean something else (database columns, TF Serving's Classify API, the profile's own JSON fields).
LAYOUT = re.compile(
    r"""["'](serving_default|serving_pixels|serving_features|image_bytes|embedding_projection|input_statistics"""
    r"""|assets\.extra|assets/labels\.txt|model_card\.json|reference_profile\.json|gate_result\.json"""
    r"""|tf_serving_warmup_requests|export_manifest\.json)["']"""
)
ALLOWED = {"storage/migrations/versions/0001_api_keys_and_predictions.py", "gateway/service.py"}  # DB column names


def test_no_module_but_the_contract_spells_out_the_export_layout():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if relative == "contract.py" or relative in ALLOWED:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            code = line.split("#", 1)[0]
            if LAYOUT.search(code) and not code.lstrip().startswith((">>>", "...")):
                offenders.append(f"{relative}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def test_contract_imports_only_the_standard_library_and_errors():
    imports = re.findall(r"^(?:from|import) ([\w.]+)", (SRC / "contract.py").read_text(), re.MULTILINE)
    assert {name.split(".")[0] for name in imports} <= {"__future__", "hashlib", "json", "os", "dataclasses",
                                                         "pathlib", "typing", "imgclf"}  # fmt: skip
    assert [name for name in imports if name.startswith("imgclf")] == ["imgclf.errors"]


def test_reading_labels_and_cards(tmp_path):
    version = tmp_path / "3"
    (version / contract.EXTRA_DIR).mkdir(parents=True)
    assert contract.read_labels(version) == []
    with pytest.raises(ExportError, match="no readable model card"):
        contract.read_model_card(version)
    (version / contract.LABELS_FILE).parent.mkdir()
    (version / contract.LABELS_FILE).write_text("cats\ngolden retriever\n\n")
    (version / contract.MODEL_CARD_FILE).write_text(json.dumps({"classes": ["cats", "golden retriever"]}))
    assert contract.read_labels(version) == ["cats", "golden retriever"]  # one per line, spaces kept
    assert contract.read_model_card(version)["classes"] == ["cats", "golden retriever"]
    (version / contract.MODEL_CARD_FILE).write_text("[1, 2]")
    with pytest.raises(ExportError, match="not a JSON object"):
        contract.read_model_card(version)
