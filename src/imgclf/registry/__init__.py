"""The model registry: versions on disk, their states (stable, canary, labels), the promotion gate."""
