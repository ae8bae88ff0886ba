"""The prediction API gateway: authentication, rate limits, validation, prediction log, reviews.

``app`` (FastAPI factory and the ``Gateway`` holding its parts), ``routes/`` (predict,
predictions, reviews, health), ``dependencies`` (API key and rate limit per request),
``middleware`` (request id, body limit, metrics, access log), ``errors`` (exceptions to the one
JSON error shape), ``service`` (what a prediction does, without HTTP), ``uploads`` and
``validation`` (reading and checking images), ``backends`` (in-process, gRPC or REST model),
``auth``, ``api_keys``, ``rate_limit``, ``prediction_log`` (database or disk spool),
``metrics``, ``server`` (``imgclf gateway``).
"""
