"""imgclf: from a folder of labelled images to a production image classifier on TensorFlow.

The Python API (``imgclf.api``) is importable from here: ``imgclf.train``, ``imgclf.evaluate``,
``imgclf.export``, ``imgclf.load``, ``imgclf.predict_batch``. Nothing heavy is imported until one of them is called.
"""

# The ``imgclf.export`` subpackage is loaded first, so that the name ``imgclf.export`` can then be the
# API function (Python only sets a package attribute when the subpackage is first imported).
from imgclf import export as _export_package  # noqa: F401
from imgclf.api import Model, Prediction, evaluate, export, load, predict_batch, train

__version__ = "0.1.0"
__all__ = ["train", "evaluate", "export", "load", "predict_batch", "Model", "Prediction", "__version__"]
