"""imgclf: from a folder of labelled images to a production image classifier on TensorFlow."""

__version__ = "0.1.0"
