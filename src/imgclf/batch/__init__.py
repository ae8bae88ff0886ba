"""Batch inference on Ray Data: classify folders, globs, manifests or object-store prefixes of any size.

``predict_batch`` (``imgclf predict-batch``) runs the export's own ``serving_default`` on encoded
bytes in one actor pool, checks every file as the gateway does, and writes one row per input to
whole part files (parquet, JSON lines or CSV) that a resumed job completes. Embedded local Ray by
default; any Ray cluster by address (KubeRay: ``deploy/kubernetes/rayjob.yaml``).
"""

from imgclf.batch.job import BatchResult, predict_batch
from imgclf.batch.output import FORMATS

__all__ = ["FORMATS", "BatchResult", "predict_batch"]
