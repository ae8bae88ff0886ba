"""A real two-node Ray cluster on loopback, started with ``ray start`` and stopped by process id.

Each node has its own ``--temp-dir`` and one CPU; no dashboard UI. The cluster uses Ray's token
authentication with a token of its own (``RAY_AUTH_TOKEN_PATH``), so it never reads or writes
``~/.ray``. Every process it starts carries a marker in its environment (Ray's workers inherit it
from their raylet), so stopping it ends exactly those processes (never ``ray stop``, which ends
every Ray on the machine), also when a test fails.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from tests.helpers import free_port

RAY = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "ray"
MARKER = "IMGCLF_TEST_RAY_CLUSTER"


@dataclass(frozen=True)
class LoopbackCluster:
    address: str  # 127.0.0.1:PORT (GCS)
    env: dict[str, str]  # what a client process needs (token, marker)


def marked_processes(marker: str) -> list[int]:
    """Process ids whose environment holds ``MARKER=marker``."""
    found = []
    needle = f"{MARKER}={marker}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def stop_marked(marker: str, grace_s: float = 5.0) -> None:
    """SIGTERM every marked process, then SIGKILL what is left after ``grace_s``."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in marked_processes(marker):
            with suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace_s
        while marked_processes(marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not marked_processes(marker):
            return


def short_temp_dir() -> Path:
    """Ray's sockets live in its temp dir and a socket path has at most 107 bytes: pytest's are too long."""
    return Path(tempfile.mkdtemp(prefix="imgclf-ray-", dir="/tmp"))


def client_env(base: Path, marker: str) -> dict[str, str]:
    """Environment for a process of the test's Ray: its marker, its own token, ``base`` as Ray's temp root."""
    token = base / "auth_token"
    if not token.exists():
        token.write_text(secrets.token_hex(32))
        token.chmod(0o600)
    env = dict(os.environ)
    env.update(
        {
            MARKER: marker,
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_TMPDIR": str(base),
        }
    )
    env.pop("RAY_ADDRESS", None)
    return env


@contextmanager
def loopback_cluster() -> Iterator[LoopbackCluster]:
    """Head and one worker node on 127.0.0.1, one CPU each; both stopped (and their files removed) on the way out."""
    base = short_temp_dir()
    marker = secrets.token_hex(8)
    env = client_env(base, marker)
    port = free_port()
    common = ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--disable-usage-stats"]
    head = [str(RAY), "start", "--head", "--port", str(port), "--include-dashboard=false", *common]
    worker = [str(RAY), "start", "--address", f"127.0.0.1:{port}", *common]
    try:
        for name, command in (("head", head), ("worker", worker)):
            temp = base / name
            temp.mkdir()
            result = subprocess.run(
                [*command, "--temp-dir", str(temp)], env=env, capture_output=True, text=True, timeout=120
            )
            assert result.returncode == 0, f"ray start ({name}) failed:\n{result.stdout}\n{result.stderr}"
        _wait_for_port(port)
        yield LoopbackCluster(f"127.0.0.1:{port}", env)
    finally:
        stop_marked(marker)
        assert not marked_processes(marker), "processes of the test cluster are still running"
        shutil.rmtree(base, ignore_errors=True)


def _wait_for_port(port: int, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"the head's GCS does not answer on port {port}")
