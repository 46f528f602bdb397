"""Child processes: free ports, readiness, CPU accounting and stopping whole process groups.

Every process the bench starts runs in its own session (process group), so a Ctrl-C in the
terminal reaches the bench only and the bench's `finally` blocks decide what stops when.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port free on loopback right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_group(process: subprocess.Popen, timeout: float = 5.0) -> None:
    """SIGTERM the process group, then SIGKILL what is left; always reaps the leader."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # workers the leader left behind
    process.wait()


def http_status(port: int, path: str, timeout: float = 1.0) -> int | None:
    """The status of one GET, or None when nothing answers."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def listeners(port: int) -> int:
    """Listening TCP sockets on `port`: one per worker with SO_REUSEPORT."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def wait_ready(
    process: subprocess.Popen, port: int, path: str, log: Path, listening: int = 1
) -> None:
    """Wait until `path` answers 200 and `listening` sockets are bound; raise with the
    log's tail if the process dies or 30 s pass."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{tail(log)}")
        if listeners(port) >= listening and http_status(port, path) == 200:
            return
        time.sleep(0.05)
    raise RuntimeError(f"server not ready on port {port} after 30 s:\n{tail(log)}")


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def tree_pids(root: int) -> list[int]:
    """`root` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat:
                children.setdefault(int(stat[1]), []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def cpu_seconds(root: int) -> float:
    """User + system CPU of a process tree so far (live processes only)."""
    total = 0
    for pid in tree_pids(root):
        stat = _stat(pid)
        if stat:
            total += int(stat[11]) + int(stat[12])
    return total / CLOCK_TICKS


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name: [state, ppid, ...]."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()
