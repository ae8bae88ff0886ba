"""The prediction API gateway: authentication, rate limits, validation, prediction log, reviews.

Built so far (issue 4, in progress): ``api_keys`` (hashed, scoped keys), ``rate_limit`` (token
buckets in memory or Redis), ``validation`` (upload checks before the model), ``backends``
(in-process, gRPC or REST model backends). The FastAPI app and the review queue are not built yet.
"""
