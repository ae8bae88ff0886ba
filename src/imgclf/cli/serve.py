"""``imgclf serve``: the TF Serving-compatible model server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from imgclf.cli.base import (
    app,
)


def _server_defaults() -> dict[str, object]:
    """``ServerOptions``' defaults (the CLI's are the same values, written once)."""
    from dataclasses import MISSING, fields

    from imgclf.serving.options import ServerOptions

    return {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        for f in fields(ServerOptions)
        if f.default is not MISSING or f.default_factory is not MISSING
    }


SERVER = _server_defaults()


@app.command()
def serve(
    model_name: Annotated[str, typer.Option("--model-name", help="Name to serve the model under.")] = "default",
    model_base_path: Annotated[
        Path | None, typer.Option("--model-base-path", help="Directory holding integer version directories.")
    ] = None,
    model_config_file: Annotated[
        Path | None, typer.Option("--model-config-file", help="TF Serving model config (text proto); several models.")
    ] = None,
    model_config_file_poll_wait_seconds: Annotated[
        float, typer.Option("--model-config-file-poll-wait-seconds", help="Re-read the config file (0: never).")
    ] = SERVER["model_config_file_poll_wait_seconds"],
    file_system_poll_wait_seconds: Annotated[
        float, typer.Option("--file-system-poll-wait-seconds", help="Poll for new versions (0: only at start).")
    ] = SERVER["file_system_poll_wait_seconds"],
    rest_port: Annotated[int, typer.Option("--rest-port", "--rest-api-port", help="REST port.")] = SERVER[
        "rest_api_port"
    ],
    grpc_port: Annotated[int, typer.Option("--grpc-port", "--port", help="gRPC port.")] = SERVER["grpc_port"],
    host: Annotated[
        str,
        typer.Option(
            help="Interface to listen on. 0.0.0.0 (every interface) as TF Serving; the model server has no "
            "authentication, so keep it on a private network (or 127.0.0.1) behind the gateway."
        ),
    ] = SERVER["host"],
    enable_batching: Annotated[bool, typer.Option("--enable-batching", help="Merge concurrent requests.")] = SERVER[
        "enable_batching"
    ],
    batching_parameters_file: Annotated[
        Path | None, typer.Option("--batching-parameters-file", help="TF Serving BatchingParameters (text proto).")
    ] = None,
    enable_model_warmup: Annotated[
        bool, typer.Option("--enable-model-warmup/--no-model-warmup", help="Replay assets.extra warmup requests.")
    ] = SERVER["enable_model_warmup"],
    rest_api_timeout_in_ms: Annotated[int, typer.Option("--rest-api-timeout-in-ms", help="REST deadline.")] = SERVER[
        "rest_api_timeout_in_ms"
    ],
    intra_op: Annotated[
        int, typer.Option("--tensorflow-intra-op-parallelism", help="Threads inside one op (0: all cores).")
    ] = SERVER["tensorflow_intra_op_parallelism"],
    inter_op: Annotated[
        int, typer.Option("--tensorflow-inter-op-parallelism", help="Ops run at once (0: TensorFlow decides).")
    ] = SERVER["tensorflow_inter_op_parallelism"],
    grpc_max_threads: Annotated[
        int, typer.Option("--grpc-max-threads", help="gRPC handler threads (requests served at once).")
    ] = SERVER["grpc_max_threads"],
    grace: Annotated[float, typer.Option("--shutdown-grace-seconds", help="Time to drain on SIGTERM.")] = SERVER[
        "shutdown_grace_seconds"
    ],
    prefer_tflite_model: Annotated[
        bool,
        typer.Option(
            "--prefer-tflite-model",
            help="Answer versions that hold model.tflite (imgclf export --tflite) with the LiteRT interpreter; "
            "the same REST/gRPC contract without embedding_projection. A .tflite that cannot load is skipped.",
        ),
    ] = SERVER["prefer_tflite_model"],
    log_level: Annotated[str, typer.Option(help="debug, info, warning or error.")] = "info",
) -> None:
    """Serve exported models over TF Serving's REST and gRPC protocol (batching, hot version swaps)."""
    from imgclf.logs import configure_json_logging
    from imgclf.serving.options import ServerOptions, load_batching_parameters
    from imgclf.serving.server import ModelServer

    configure_json_logging(log_level)
    options = ServerOptions(
        model_name=model_name,
        model_base_path=model_base_path,
        model_config_file=model_config_file,
        model_config_file_poll_wait_seconds=model_config_file_poll_wait_seconds,
        file_system_poll_wait_seconds=file_system_poll_wait_seconds,
        rest_api_port=rest_port,
        grpc_port=grpc_port,
        host=host,
        rest_api_timeout_in_ms=rest_api_timeout_in_ms,
        enable_batching=enable_batching,
        batching_parameters=load_batching_parameters(batching_parameters_file) if batching_parameters_file else None,
        enable_model_warmup=enable_model_warmup,
        tensorflow_intra_op_parallelism=intra_op,
        tensorflow_inter_op_parallelism=inter_op,
        grpc_max_threads=grpc_max_threads,
        shutdown_grace_seconds=grace,
        prefer_tflite_model=prefer_tflite_model,
    )
    server = ModelServer(options)
    server.start()
    shown = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
    print(
        f"Model server: REST http://{shown}:{server.rest_port}/v1/models/NAME, gRPC {shown}:{server.grpc_port}"
        + (" (listening on every interface)" if shown != options.host else ""),
        flush=True,
    )
    server.serve()
