"""``imgclf serve``: a pip-installable model server that speaks TF Serving's REST and gRPC protocol, and
the Open Inference Protocol (KServe v2) on the same ports.

It loads the SavedModels that ``imgclf export`` (or any TF2 export) writes under
``BASE_PATH/<integer version>/``, and needs nothing else from imgclf: the export carries the
preprocessing. Modules, from the bottom up:

- ``status``: TF error codes and their HTTP and gRPC equivalents.
- ``options``: the server's settings, TF Serving's model-config and batching-parameter files.
- ``servable``: one loaded SavedModel version (signatures, metadata, warmup, run).
- ``manager``: which versions of which models are loaded; polling, policies, labels, status.
- ``batching``: merges concurrent requests into one model call.
- ``predictor``: the request logic shared by REST and gRPC (validation, batching, metrics).
- ``json_tensors``: TF Serving's JSON request and response formats.
- ``metrics``: Prometheus series with TF Serving's names.
- ``open_inference``: the Open Inference Protocol's operations (addressing, checks, classification);
  ``open_inference_rest`` its ``/v2`` REST routes, ``open_inference_grpc`` its gRPC service.
- ``rest``, ``grpc_api``: the two front ends; ``server``: runs them together.
"""
