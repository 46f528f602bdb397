"""Running `python run.py` as a real process for tests: a free port, its own data folder,
and a guaranteed stop."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTH_")}
    env.update(
        {
            "AUTH_STORAGE_PATH": str(tmp_path / "data" / "auth.db"),
            "AUTH_PASSWORDS_BCRYPT_ROUNDS": "4",
            "AUTH_RATELIMIT_ENABLED": "false",
            **overrides,
        }
    )
    return env


def run_cli(
    args: list[str], env: dict[str, str], stdin: str = ""
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


class ServerProcess:
    """`python run.py` on a free port; use as a context manager."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.port = int(env.setdefault("AUTH_SERVER_PORT", str(free_port())))
        self.env, self.args = env, args
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ServerProcess:
        self.process = subprocess.Popen(
            [sys.executable, "run.py", *self.args],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.process.stdout.read()}")
            try:
                self.request("GET", "/api/test/all")
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("server did not start in 30 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()

    def request(
        self, method: str, path: str, body: dict | None = None, token: str | None = None
    ) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data else {}
        if token:
            headers["x-access-token"] = token
        request = urllib.request.Request(self.url + path, data, headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, _decode(response.read(), response.headers)
        except urllib.error.HTTPError as error:
            with error:
                return error.code, _decode(error.read(), error.headers)


def _decode(raw: bytes, headers: Any) -> Any:
    if headers.get_content_type() == "application/json":
        return json.loads(raw)
    return raw.decode()
