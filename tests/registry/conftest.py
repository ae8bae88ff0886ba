"""A registry laid out as ``imgclf export`` writes it, without training: cards and a parseable SavedModel file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def minimal_saved_model(unknown_op: bool = False) -> bytes:
    """A ``saved_model.pb`` with one ``serve`` MetaGraph: enough for the registry's completeness check.

    Registry state operations never run a model. ``unknown_op``: its graph uses an op TensorFlow
    does not have, so a load fails although the file is well-formed.
    """
    from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

    meta_graph = meta_graph_pb2.MetaGraphDef()
    meta_graph.meta_info_def.tags.append("serve")
    if unknown_op:
        meta_graph.graph_def.node.add(name="x", op="NoSuchOpInImgclf")
    return saved_model_pb2.SavedModel(saved_model_schema_version=1, meta_graphs=[meta_graph]).SerializeToString()


def write_version(base: Path, version: int, accuracy: float | None = None) -> Path:
    path = base / str(version)
    extra = path / "assets.extra"
    extra.mkdir(parents=True)
    card = {"version": version, "created_at": f"2026-11-2{version % 10}T10:00:00+00:00", "classes": ["cats", "dogs"],
            "metrics": {} if accuracy is None else {"accuracy": accuracy, "macro_f1": accuracy - 0.01}}  # fmt: skip
    (extra / "model_card.json").write_text(json.dumps(card))
    (path / "saved_model.pb").write_bytes(minimal_saved_model())
    return path


@pytest.fixture
def registry(tmp_path) -> Path:
    """Versions 1–3 of ``cats_dogs`` (no registry state yet: nothing promoted)."""
    for version, accuracy in ((1, 0.91), (2, 0.95), (3, 0.93)):
        write_version(tmp_path / "cats_dogs", version, accuracy)
    return tmp_path
