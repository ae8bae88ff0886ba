"""The prediction API gateway (FastAPI): authentication, rate limits, validation, prediction log.

Work in progress (issue 4): API keys are here; the HTTP app is not built yet.
"""
