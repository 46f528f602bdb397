"""The wrk generator: C, epoll, one thread drives tens of thousands of requests a second on
a fraction of a core, so on a 2-core machine the server, not the generator, saturates."""

from __future__ import annotations

import ipaddress
import itertools
import subprocess
import tempfile
from pathlib import Path

from .load import LoadRun, LoadSpec, whole_seconds

TEMPLATE = Path(__file__).with_name("wrk.lua")
THREADS = 1  # a core's fraction is plenty; the other cycles belong to the server


class WrkGenerator:
    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.name = f"wrk ({version(executable)}, {THREADS} thread)"
        self._scripts = tempfile.TemporaryDirectory(prefix="bench-wrk-")
        self._numbers = itertools.count()

    def start(self, spec: LoadSpec) -> LoadRun:
        threads = min(THREADS, spec.connections)
        script = Path(self._scripts.name) / f"{next(self._numbers)}.lua"
        script.write_text(render_script(spec, threads))
        command = [
            self.executable,
            f"-t{threads}",
            f"-c{spec.connections}",
            f"-d{whole_seconds(spec.duration)}s",
            "--timeout",
            "10s",
            "-s",
            str(script),
        ]
        for name, value in spec.all_headers():
            command += ["-H", f"{name}: {value}"]
        command.append(spec.url + spec.path)
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        return LoadRun(spec, "wrk", process)

    def close(self) -> None:
        self._scripts.cleanup()


def render_script(spec: LoadSpec, threads: int) -> str:
    token_file = str(spec.token_file) if spec.token_file else None
    access_file = str(spec.access_tokens) if spec.access_tokens else None
    values = {
        "__METHOD__": lua_string(spec.method),
        "__BODY__": lua_string(spec.body),
        "__TOKEN_FILE__": lua_string(token_file),
        "__ACCESS_FILE__": lua_string(access_file),
        "__JUNK_PATHS__": lua_table([lua_string(p) for p in spec.junk_paths]),
        "__FORWARDED__": lua_table(
            [str(first_address(spec.forwarded)), str(spec.forwarded[1])]
            if spec.forwarded
            else []
        ),
        "__EXPECTED__": lua_table([f"[{status}] = true" for status in spec.expected]),
        "__THREADS__": str(threads),
    }
    text = TEMPLATE.read_text()
    for marker, value in values.items():
        text = text.replace(marker, value, 1)
    return text


def lua_string(value: str | None) -> str:
    """A Lua long string literal (no escapes to get wrong), or nil."""
    if value is None:
        return "nil"
    level = 0
    while f"]{'=' * level}]" in value:
        level += 1
    return f"[{'=' * level}[{value}]{'=' * level}]"


def lua_table(items: list[str]) -> str:
    """A Lua table constructor of these items, or nil for none."""
    return "{" + ", ".join(items) + "}" if items else "nil"


def first_address(forwarded: tuple[str, int] | None) -> int:
    assert forwarded is not None
    return int(ipaddress.IPv4Address(forwarded[0]))


def version(executable: str) -> str:
    result = subprocess.run(
        [executable, "-v"], capture_output=True, text=True, check=False
    )
    first = (result.stdout or result.stderr).splitlines()
    return first[0].split(" [")[0] if first else "wrk"
