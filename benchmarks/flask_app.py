"""The baseline: what the tutorials deploy. Flask under gunicorn, one upload per request.

Decodes the uploaded file with Pillow, resizes it, applies the backbone's normalization and calls
``model.predict`` on a batch of one, per request. Configured by environment variables:
``IMGCLF_BENCH_RUN`` (an imgclf run directory: its best Keras checkpoint and labels are used).

    gunicorn -w 2 -b 127.0.0.1:8601 benchmarks.flask_app:app
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import keras
import numpy as np
from flask import Flask, jsonify, request
from PIL import Image

RUN = Path(os.environ["IMGCLF_BENCH_RUN"])
CONFIG = json.loads((RUN / "config.json").read_text())
SIZE = CONFIG["image_size"]
LABELS = (RUN / "labels.txt").read_text().split()
model = keras.models.load_model(RUN / "weights" / "best.keras", compile=False)
app = Flask(__name__)


@app.post("/predict")
def predict():  # type: ignore[no-untyped-def]
    upload = request.files["file"]
    image = Image.open(io.BytesIO(upload.read())).convert("RGB").resize((SIZE, SIZE), Image.BILINEAR)
    pixels = np.asarray(image, dtype=np.float32)[None] / 127.5 - 1.0  # MobileNetV2's normalization
    scores = model.predict(pixels, verbose=0)[0]
    if len(scores) == 1:  # one sigmoid unit
        scores = np.array([1 - scores[0], scores[0]])
    return jsonify({"label": LABELS[int(np.argmax(scores))], "scores": scores.tolist()})
