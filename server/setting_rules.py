"""What each setting may be. Every field of `settings.py` carries one rule (in its
metadata); `settings.validate` applies them at start, so that a bad value stops the
process with one message naming the setting and what it must be, instead of a
traceback or a 500 later. Rules are data, so the message and the check cannot drift."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 6265 cookie-name: an RFC 2616 token (no separators, no controls).
_COOKIE_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# What browsers send in Origin: lower-case scheme and host, port only when not default.
_ORIGIN = re.compile(
    rf"(?P<scheme>[a-z][a-z0-9+.-]*)://"
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9a-f:.]+\])"
    r"(?::(?P<port>[1-9][0-9]{0,4}))?"
)


class Rule(Protocol):
    def problem(self, value: Any) -> str | None:
        """None when the value is allowed, else what is wrong: "must be ...", said so
        that `<setting> <problem>` reads as one sentence."""


@dataclass(frozen=True)
class Is:
    """A value test with the words for what it allows."""

    allowed: str
    accepts: Callable[[Any], bool]
    secret: bool = False  # never echo the value (keys, passwords in DSNs)

    def problem(self, value: Any) -> str | None:
        if self.accepts(value):
            return None
        return f"must be {self.allowed}" + ("" if self.secret else f", not {value!r}")


@dataclass(frozen=True)
class Each:
    """A list whose every entry passes `entry`."""

    entry: Is
    unique: bool = False
    non_empty: bool = False

    def problem(self, values: Sequence[Any]) -> str | None:
        if self.non_empty and not values:
            return f"must list at least one entry, each {self.entry.allowed}"
        for value in values:
            if not self.entry.accepts(value):
                return f"entry {value!r} must be {self.entry.allowed}"
        if self.unique:
            for index, value in enumerate(values):
                if value in values[:index]:
                    return f"lists {value!r} more than once"
        return None


def at_least(low: float) -> Is:
    return Is(f"at least {low}", lambda v: v >= low)


def above(low: float) -> Is:
    return Is(f"greater than {low}", lambda v: v > low)


def between(low: float, high: float) -> Is:
    return Is(f"between {low} and {high}", lambda v: low <= v <= high)


def one_of(*choices: str, any_case: bool = False) -> Is:
    words = ", ".join(choices) + (" (any case)" if any_case else "")
    if any_case:
        upper = {c.upper() for c in choices}
        return Is(f"one of {words}", lambda v: v.upper() in upper)
    return Is(f"one of {words}", lambda v: v in choices)


def text(allowed: str, test: Callable[[str], bool], *, secret: bool = False) -> Is:
    return Is(allowed, test, secret=secret)


BOOLEAN = Is("true or false", lambda v: isinstance(v, bool))
ANY_TEXT = Is("text without control characters", lambda v: v.isprintable())
NON_EMPTY = Is("non-empty text", lambda v: bool(v.strip()) and v.isprintable())


def is_network(entry: str) -> bool:
    try:
        ipaddress.ip_network(entry.strip(), strict=False)
    except ValueError:
        return False
    return True


def is_origin(entry: str) -> bool:
    """`*`, or scheme://host[:port] exactly as a browser sends it in `Origin`."""
    if entry == "*":
        return True
    match = _ORIGIN.fullmatch(entry)
    if match is None:
        return False
    port = match["port"]
    if port is None:
        return True
    return int(port) <= 65535 and DEFAULT_PORTS.get(match["scheme"]) != int(port)


def is_cookie_name(name: str) -> bool:
    """A token; `__Host-` names are refused because browsers require `Path=/` for them
    and the session cookie's path is /api/auth."""
    return bool(_COOKIE_NAME.fullmatch(name)) and not name.startswith("__Host-")


def is_host(host: str) -> bool:
    return bool(host) and host.isprintable() and not any(c in host for c in " /[]")


NETWORK = Is("an IP address or network such as 10.0.0.0/8 or ::1", is_network)
ORIGIN = Is(
    '"*" or an origin as browsers send it: scheme://host[:port] in lower case, '
    "no path, no default port (e.g. http://localhost:8081)",
    is_origin,
)
COOKIE_NAME = Is(
    "a cookie name: letters, digits and !#$%&'*+-.^_`|~, not starting with __Host-",
    is_cookie_name,
)
HOST = Is("a host name or IP address such as 127.0.0.1, 0.0.0.0 or ::", is_host)
