"""Closing the loop: reviewed predictions back into training, a gated canary, and its judgement.

* ``reviewed``: reviewed images from the prediction log (``imgclf reviews export``), with why each
  was queued (``audit`` items are an unbiased sample);
* ``plan``: what a retraining run trains and evaluates on (original data + reviews; a fixed
  evaluation set that is never trained on);
* ``retrain``: ``imgclf retrain``: train, evaluate, gate against stable, export, canary;
* ``judge``: ``imgclf models judge``: the canary against stable on live traffic, then promote or roll back;
* ``watch``: when to retrain (new reviews, drift, a schedule), one run at a time.
"""
