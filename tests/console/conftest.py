"""Fixtures for the console tests (the site itself is built by ``tests.console.site``)."""

from __future__ import annotations

import pytest

from tests.console.site import console_site, seed_predictions


@pytest.fixture(scope="module")
def site(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One console per module on SQLite, with 90 seeded predictions (30 queued for review)."""
    root = tmp_path_factory.mktemp("console")
    with console_site(root, f"sqlite:///{root / 'imgclf.db'}") as running:
        running.seeded = seed_predictions(running, 90)  # type: ignore[attr-defined]
        yield running
