"""Content-addressed image files: ``ROOT/ab/cd/<sha256>``, written atomically, pruned by age.

Keeps what reviewers look at and what retraining reads; the database stores only the hash.

Example:
    >>> store = ImageStore(Path("imgclf_images"))
    >>> digest = store.put(jpeg_bytes)
    >>> store.path(digest).read_bytes() == jpeg_bytes
    True
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path

_DIGEST = re.compile(r"[0-9a-f]{64}")


class ImageStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a sha256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest[2:4] / digest

    def put(self, data: bytes) -> str:
        """Store ``data`` (once per content) and return its sha256."""
        digest = hashlib.sha256(data).hexdigest()
        target = self.path(digest)
        if target.exists():
            os.utime(target)  # a fresh upload of the same image restarts its retention clock
            return digest
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".tmp-", delete=False) as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(handle.name, target)
        return digest

    def contains(self, digest: str) -> bool:
        return self.path(digest).exists()

    def prune(self, older_than_days: float, keep: set[str] | frozenset[str] = frozenset()) -> int:
        """Delete images not touched for ``older_than_days`` (except those in ``keep``); returns the count."""
        cutoff = time.time() - older_than_days * 86400
        removed = 0
        for path in self.root.glob("??/??/*"):
            if path.name.startswith(".tmp-") or path.name in keep:
                continue
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
                removed += 1
        return removed
