"""Review decisions as library calls, shared by ``POST /v1/reviews/{id}`` and the console.

Both record a label through ``submit_review`` (the same validation, ``ReviewRequest``, the same
default reviewer: the key's name); the console can also undo a decision it made (``undo_review``:
only while nobody changed that review since) and shows the queue's counts.

Example:
    >>> prediction, previous = submit_review(gateway, "3fa9...", ReviewRequest(label="dogs"), key)
    >>> undo_review(gateway, "3fa9...", ReviewState.of(prediction), previous)
    True
"""

from __future__ import annotations

from imgclf.gateway.api_keys import KeyInfo
from imgclf.gateway.runtime import Gateway
from imgclf.gateway.schemas import ReviewRequest
from imgclf.storage.models import Prediction
from imgclf.storage.predictions import (
    QueueCounts,
    ReviewState,
    change_review,
    restore_review,
    review_counts,
)

__all__ = ["QueueCounts", "ReviewState", "queue_counts", "submit_review", "undo_review"]


def submit_review(
    gateway: Gateway, prediction_id: str, body: ReviewRequest, key: KeyInfo
) -> tuple[Prediction, ReviewState]:
    """Record ``body.label`` for a prediction; returns it and the review state it replaced."""
    gateway.require_database()
    return change_review(gateway.engine, prediction_id, body.label, body.reviewer or key.name)


def undo_review(gateway: Gateway, prediction_id: str, decided: ReviewState, previous: ReviewState) -> bool:
    """Put ``previous`` back if the review is still the ``decided`` one; False if someone changed it since."""
    gateway.require_database()
    return restore_review(gateway.engine, prediction_id, decided, previous)


def queue_counts(gateway: Gateway) -> QueueCounts:
    gateway.require_database()
    return review_counts(gateway.engine)
