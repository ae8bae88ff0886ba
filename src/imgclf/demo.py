"""``imgclf demo``: the whole lifecycle on a dataset it draws itself, in a couple of minutes.

check → train (small CNN) → evaluate → export → classify a few images, then (``serve_demo``) the
gateway on http://127.0.0.1:8000 with a demo API key and a curl command to try. Needs no data,
no weights and no internet. Prints where everything went.
"""

from __future__ import annotations

import shutil
import socket
from collections.abc import Callable
from pathlib import Path

from imgclf.config import AugmentationConfig, GatewaySettings, TrainConfig
from imgclf.data.checks import check_dataset
from imgclf.data.sources import load_dataset
from imgclf.errors import ConfigError
from imgclf.evaluation.evaluate import evaluate_run
from imgclf.export.inference import ExportedModel
from imgclf.modeling.training import train
from imgclf.registry.publish import export_run
from imgclf.synthetic import make_shapes_dataset


def run_demo(out: str | Path = "demo_output", report: Callable[[str], None] = print) -> dict[str, Path]:
    out = Path(out).resolve()
    if out.exists():
        shutil.rmtree(out)
    data = make_shapes_dataset(out / "data", per_class=150, size=64, seed=0)
    report(f"1/5 Drew a 3-class shapes dataset in {data}")

    check = check_dataset(load_dataset(data))
    report(f"2/5 Data check: {check.summary['files']} files, {check.problem_count} problem(s)")

    config = TrainConfig(
        data=str(data),
        out=str(out / "run"),
        model="small_cnn",
        image_size=64,
        epochs=15,
        batch_size=32,
        early_stopping_patience=4,
        augmentation=AugmentationConfig(rotation=0.0, zoom=0.05, translation=0.05),
    )
    run = train(config, report=lambda line: report(f"    {line}"))
    report(f"3/5 Trained small_cnn: run directory {run.path}")

    metrics = evaluate_run(run.path)
    report(f"4/5 Validation accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['macro_f1']:.3f}: {run.eval_dir}")

    version_dir = export_run(run.path, out / "registry", name="shapes")
    report(f"5/5 Exported SavedModel: {version_dir}")

    model = ExportedModel.load(version_dir)
    samples = sorted((data / "triangle").glob("*.jpg"))[:1] + sorted((data / "circle").glob("*.png"))[:1]
    for prediction in model.classify_files(samples):
        report(f"    {Path(prediction.path).name}: {prediction.label} ({prediction.confidence:.2f})")
    report(
        "\nEverything is under " + str(out) + ":\n"
        f"  data        {data}\n  run         {run.path}  (config, history, curves, checkpoint)\n"
        f"  evaluation  {run.eval_dir}  (metrics.json, confusion matrices, ROC/PR, worst mistakes)\n"
        f"  model       {version_dir}  (SavedModel for TF Serving; try: imgclf predict {version_dir.parent} IMAGE)"
    )
    return {"data": data, "run": run.path, "export": version_dir}


def reserve_port(host: str, port: int) -> socket.socket:
    """Bind the gateway's port now, so a busy port fails before minutes of training."""
    try:
        return socket.create_server((host, port))
    except OSError as error:
        raise ConfigError(f"cannot listen on {host}:{port} ({error.strerror}); choose another with --port") from None


def serve_demo(out: Path, sock: socket.socket, report: Callable[[str], None] = print) -> None:
    """Run the gateway on the demo's export, with a fresh demo key; blocks until Ctrl-C."""
    from imgclf.gateway.api_keys import create_key
    from imgclf.gateway.server import run_gateway
    from imgclf.storage.database import connect

    out = Path(out).resolve()
    host, port = sock.getsockname()[:2]
    settings = GatewaySettings(
        _env_file=None,
        registry=out / "registry",
        model_name="shapes",
        database_url=f"sqlite:///{out / 'imgclf.db'}",
        image_store_dir=out / "images",
        spool_dir=out / "spool",
        host=host,
        port=port,
    )
    key = create_key(connect(settings.database_url), "demo", "admin").secret
    image = sorted((out / "data" / "circle").glob("*"))[0]
    report(
        f"\nGateway on http://{host}:{port} (API docs: http://{host}:{port}/docs). Demo API key (admin):\n  {key}\n"
        f"Classify an image from another terminal:\n"
        f"  curl -H 'Authorization: Bearer {key}' -F 'files=@{image}' http://{host}:{port}/v1/predict\n"
        f"Review queue: curl -H 'Authorization: Bearer {key}' http://{host}:{port}/v1/reviews\n"
        "Ctrl-C stops it."
    )
    run_gateway(settings, sock=sock)
