"""The key file on disk (`signing_keys.json` in the data folder): strict reading, the
permission checks, atomic owner-only writes that never follow a planted link, and the
locks that serialise writers and tell `rotate-key` whether servers are running.

A file that cannot be trusted or understood raises KeyFileError with one line naming the
file and the fix; nothing here ever "repairs" a key file by overwriting it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import secrets
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .settings import ALGORITHMS, SettingsError

logger = logging.getLogger("auth.server")
KEY_FILE_NAME = "signing_keys.json"
LOCK_FILE_NAME = "signing_keys.lock"
PRESENCE_FILE_NAME = "signing_keys.inuse"
_FIELDS = {"kid", "algorithm", "material", "created_at", "retired_at", "active_from"}
_REQUIRED = {"kid", "algorithm", "material", "created_at"}
_OPTIONAL = ("retired_at", "active_from")
_FIX = (
    "restore it from a backup, or delete it to generate a new key "
    "(tokens signed with the old keys will then be refused)"
)


class KeyFileError(SettingsError):
    """The key file or its folder cannot be trusted or read; the message names the file
    and the fix, in one line."""


@dataclass(frozen=True)
class KeyRecord:
    """One key as stored: HS256 keeps a base64url secret, the others a PKCS#8 PEM.
    `active_from` is when it starts signing (files written before two-phase rotation
    have none: the key signed from its creation)."""

    kid: str
    algorithm: str
    material: str
    created_at: int
    retired_at: int | None = None
    active_from: int | None = None

    @property
    def starts(self) -> int:
        return self.created_at if self.active_from is None else self.active_from

    def to_json(self) -> dict[str, Any]:
        return {**self.__dict__, "active_from": self.starts}


def read_records(path: Path) -> list[KeyRecord]:
    """The records of the key file, [] when there is none yet. Refuses a file (or
    folder) that others may write, and anything but a well-formed file."""
    _check_folder(path.parent)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise corrupt(path, f"cannot be opened ({exc.strerror})") from None
    with os.fdopen(fd, "rb") as handle:
        _check_key_file(path, os.fstat(handle.fileno()))
        try:
            raw = handle.read()
        except OSError as exc:
            raise corrupt(path, f"cannot be read ({exc.strerror})") from None
    return _parse_records(path, raw)


def _parse_records(path: Path, raw: bytes) -> list[KeyRecord]:
    if not raw.strip():
        raise corrupt(path, "the file is empty")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise corrupt(path, "the file is not UTF-8 text") from None
    except ValueError as exc:
        message = getattr(exc, "msg", "invalid JSON")
        raise corrupt(path, f"not valid JSON ({message})") from None
    items = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise corrupt(path, 'expected {"keys": [...]} with at least one key')
    records = [_parse_record(path, n, item) for n, item in enumerate(items, 1)]
    if len({r.kid for r in records}) != len(records):
        raise corrupt(path, "two keys share one kid")
    return records


def _parse_record(path: Path, n: int, item: object) -> KeyRecord:
    if not isinstance(item, dict):
        raise corrupt(path, f"key {n} is not an object")
    if not set(item) >= _REQUIRED or not set(item) <= _FIELDS:
        raise corrupt(
            path,
            f"key {n} must have the fields kid, algorithm, material, created_at "
            "(and may have retired_at, active_from), no others",
        )
    valid = (
        isinstance(item["kid"], str)
        and 0 < len(item["kid"]) <= 64
        and item["algorithm"] in ALGORITHMS
        and isinstance(item["material"], str)
        and bool(item["material"])
        and _is_time(item["created_at"])
        and all(item.get(f) is None or _is_time(item[f]) for f in _OPTIONAL)
    )
    if not valid:
        raise corrupt(path, f"key {n} has a field of the wrong type or value")
    return KeyRecord(**item)


def _is_time(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def corrupt(path: Path, reason: str) -> KeyFileError:
    return KeyFileError(f"the signing key file {path} is unusable: {reason}; {_FIX}")


def _who(mode: int) -> str:
    if mode & 0o022 == 0o022:
        return "group and others"
    return "group" if mode & 0o020 else "others"


def _check_folder(folder: Path) -> None:
    """A folder others may write lets them replace the key file: refused, unless it
    has the sticky bit (as /tmp), where only an entry's owner may rename or delete it
    (the key file must then be ours, which `_check_key_file` checks)."""
    try:
        info = os.stat(folder)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise KeyFileError(
            f"the data folder {folder} cannot be read ({exc.strerror})"
        ) from None
    if not info.st_mode & 0o022:
        return
    if not info.st_mode & stat.S_ISVTX:
        raise KeyFileError(
            f"the data folder {folder} is writable by {_who(info.st_mode)} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}), so anyone could replace the "
            f"signing keys: run `chmod go-w {folder}` (0700 is best) and start again"
        )
    if folder not in _SHARED_WARNED:
        _SHARED_WARNED.add(folder)
        logger.warning(
            "the data folder %s is shared with other users (mode %04o): a private "
            "folder (0700) is safer for the signing keys",
            folder,
            stat.S_IMODE(info.st_mode),
        )


_SHARED_WARNED: set[Path] = set()


def _check_key_file(path: Path, info: os.stat_result) -> None:
    """Writable by others, or owned by another user: refused (its keys may be theirs).
    Readable by others: set back to 0600, with a warning (the keys may have leaked:
    consider `rotate-key`)."""
    check_not_writable_by_others(path, info, "the signing key file")
    if info.st_uid != os.geteuid():
        raise KeyFileError(
            f"the signing key file {path} belongs to user id {info.st_uid}, not to this "
            f"server's user ({os.geteuid()}): run `chown` on it and start again"
        )
    if info.st_mode & 0o044:
        os.chmod(path, 0o600)
        logger.warning(
            "the signing key file %s was readable by %s (mode %04o): set to 0600; "
            "if others could read it, rotate the key (python run.py rotate-key)",
            path,
            "group and others" if info.st_mode & 0o044 == 0o044 else "group or others",
            stat.S_IMODE(info.st_mode),
        )


def check_not_writable_by_others(path: Path, info: os.stat_result, what: str) -> None:
    if info.st_mode & 0o022:
        raise KeyFileError(
            f"{what} {path} is writable by {_who(info.st_mode)} "
            f"(mode {stat.S_IMODE(info.st_mode):04o}), so its keys cannot be trusted: "
            f"run `chmod 600 {path}` and start again"
        )


def write_records(path: Path, records: list[KeyRecord]) -> None:
    """Write atomically, owner-only: a temporary file with a random name created with
    O_EXCL | O_NOFOLLOW (a planted file or link makes the open fail, never redirects the
    write), flushed to disk, then renamed over the key file."""
    data = json.dumps({"keys": [r.to_json() for r in records]}, indent=1).encode()
    temporary, fd = _create_temporary(path)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_folder(path.parent)


def _create_temporary(path: Path) -> tuple[Path, int]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    for _ in range(8):
        temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
        try:
            fd = os.open(temporary, flags, 0o600)
        except FileExistsError:
            continue
        os.fchmod(fd, 0o600)
        return temporary, fd
    raise KeyFileError(f"cannot create a temporary file beside {path}")


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _open_private(path: Path) -> int:
    """Open (or create, 0600) a lock file, never through a symbolic link."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(
                f"{path} is a symbolic link: remove it (the server creates it)"
            ) from None
        raise KeyFileError(f"cannot open {path} ({exc.strerror})") from None


def ensure_folder(folder: Path) -> None:
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _check_folder(folder)


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Serialise key-file changes between processes (workers, the CLI)."""
    ensure_folder(path.parent)
    fd = _open_private(path.parent / LOCK_FILE_NAME)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def alone(folder: Path, probe: bool) -> Iterator[bool]:
    """Whether no server holds the presence lock; if so, keep any from starting (and
    reading the old file) until the new one is written."""
    if not probe:
        yield False
        return
    fd = _open_private(folder / PRESENCE_FILE_NAME)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True
    finally:
        os.close(fd)


class Presence:
    """A running server's shared lock on the key file's folder: while any is held,
    `rotate-key` publishes new keys ahead (two phases). Held by the serving process
    (and inherited by its workers) for its whole life; `close` releases it."""

    def __init__(self, fd: int | None) -> None:
        self._fd = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def announce_presence(folder: Path) -> Presence:
    """Take the presence lock (shared) on `folder`'s key file before the keys are
    first read."""
    ensure_folder(folder)
    fd = _open_private(folder / PRESENCE_FILE_NAME)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return Presence(fd)
