"""Schemathesis against a real `python run.py` on the SQLite backend, driven by the
server's own OpenAPI document: no 5xx, and every status, content type, body and header
as documented. A fixed seed keeps the run reproducible."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip(
    "schemathesis",
    reason="schemathesis is not installed: pip install -r requirements-dev.txt",
)

ROOT = Path(__file__).resolve().parents[2]
CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "response_headers_conformance",
]
# The console script's own entry point, run by this interpreter wherever scripts live.
SCHEMATHESIS_CLI = [
    sys.executable,
    "-c",
    "from schemathesis.cli import schemathesis; schemathesis()",
]
MAX_EXAMPLES = 60
SEED = 20261123


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(
                f"the server exited with {process.returncode}:\n{log.read_text()}"
            )
        try:
            with urllib.request.urlopen(url + "/api/test/all", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.05)
    pytest.fail(f"the server did not start within 30 s:\n{log.read_text()}")


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    """`python run.py` on a free port with its own data folder; its log goes to a file
    (a pipe nobody reads would fill up and block the server)."""
    port = _free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AUTH_")
    }
    env.update(
        {
            "AUTH_STORAGE_PATH": str(tmp_path / "data" / "auth.db"),
            "AUTH_SERVER_PORT": str(port),
            "AUTH_PASSWORDS_BCRYPT_ROUNDS": "4",
            "AUTH_RATELIMIT_ENABLED": "false",
        }
    )
    log = tmp_path / "server.log"
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "run.py"], cwd=ROOT, env=env, stdout=output, stderr=output
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process, log)
        yield url
        assert process.poll() is None, (
            f"the server died during the run:\n{log.read_text()}"
        )
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_the_api_conforms_to_its_openapi_document(
    server_url: str, tmp_path: Path
) -> None:
    with urllib.request.urlopen(
        f"{server_url}/api/openapi.json", timeout=5
    ) as response:
        documented = sum(len(item) for item in json.load(response)["paths"].values())
    tested = documented - 1  # schemathesis leaves out the document's own route
    command = [
        *SCHEMATHESIS_CLI,
        "run",
        f"{server_url}/api/openapi.json",
        "--checks",
        ",".join(CHECKS),
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--generation-database",
        "none",
        "--request-timeout",
        "10",
        "--no-color",
    ]
    result = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert f"{tested} selected / {tested} total" in output, output
    assert "Coverage" in output and "Fuzzing" in output, output
