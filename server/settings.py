"""Settings: frozen dataclasses, one per section of settings.toml.

`load_settings` is the only reader of files and environment variables; everything else
receives a `Settings` and tests build one directly with `dataclasses.replace`. Every field
carries its rule (`setting(default, rule)`, rules in `setting_rules.py`) and `validate`
applies them all, plus the checks between fields, whenever a `Settings` is built: a bad
value stops the process at start with one message naming the setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import tomllib
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import setting_rules as rules
from .setting_rules import (
    ANY_TEXT,
    BOOLEAN,
    COOKIE_NAME,
    HOST,
    NETWORK,
    NON_EMPTY,
    ORIGIN,
    Each,
    Rule,
    above,
    at_least,
    between,
    one_of,
    text,
)

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "settings.toml"
ENV_PREFIX = "AUTH_"
ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
BACKENDS = ("sqlite", "memory", "postgres")
# The seed tutorials' APIs the server can speak (server/dialects/): bezkoder is API.md's.
DIALECTS = ("bezkoder", "cyberwolves", "wpcodevo")
SAMESITE = ("Strict", "Lax", "None")
MIN_SECRET_BYTES = 32
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
# An AUTH_ variable whose first word is this close to a section name is taken for a
# misspelt setting (TOKEN, PASSWORD, COOKIE...); TEST, USER or SECRET are left alone.
SECTION_CUTOFF = 0.8
# ... and so is one this close to a whole setting's name (AUTH_RATE_LIMIT_ENABLED).
NAME_CUTOFF = 0.9
_RULE = "rule"


class SettingsError(ValueError):
    """A setting is missing, of the wrong type or out of range; the message says which."""


def setting(default: Any, rule: Rule) -> Any:
    """A settings field with the rule its values must pass."""
    return field(default=default, metadata={_RULE: rule})


SECRET_RULE = text(
    f"at least {MIN_SECRET_BYTES} bytes (or empty to generate one)",
    lambda v: not v or len(v.encode()) >= MIN_SECRET_BYTES,
    secret=True,
)
DSN_RULE = text(
    "empty or a postgresql:// URL",
    lambda v: not v or v.startswith(POSTGRES_SCHEMES),
    secret=True,
)


@dataclass(frozen=True)
class ServerSettings:
    host: str = setting("127.0.0.1", HOST)
    port: int = setting(8080, between(1, 65535))
    workers: int = setting(1, between(1, 256))
    max_body_bytes: int = setting(16384, between(1024, 1048576))
    trusted_proxies: tuple[str, ...] = setting((), Each(NETWORK))
    cors_origins: tuple[str, ...] = setting((), Each(ORIGIN))
    log_level: str = setting("INFO", one_of(*rules.LOG_LEVELS, any_case=True))
    demo_page: bool = setting(True, BOOLEAN)
    dialects: tuple[str, ...] = setting(
        ("bezkoder",), Each(one_of(*DIALECTS), unique=True, non_empty=True)
    )
    body_timeout: float = setting(30.0, between(0.1, 3600))
    max_connections: int = setting(1000, between(1, 1_000_000))
    max_websockets_per_user: int = setting(16, between(1, 100_000))
    max_websockets_per_address: int = setting(128, between(1, 1_000_000))


@dataclass(frozen=True)
class StorageSettings:
    backend: str = setting("sqlite", one_of(*BACKENDS))
    path: str = setting("data/auth.db", NON_EMPTY)
    dsn: str = setting("", DSN_RULE)
    pool_size: int = setting(10, between(1, 1000))
    command_timeout: float = setting(10.0, between(0.1, 3600))
    acquire_timeout: float = setting(5.0, between(0.1, 3600))

    @property
    def data_dir(self) -> Path:
        """The folder holding the database file and generated keys."""
        return Path(self.path).parent


@dataclass(frozen=True)
class TokenSettings:
    algorithm: str = setting("HS256", one_of(*ALGORITHMS))
    secret: str = setting("", SECRET_RULE)
    private_key_file: str = setting("", ANY_TEXT)
    issuer: str = setting("auth-server", NON_EMPTY)
    audience: str = setting("", ANY_TEXT)
    access_ttl: int = setting(900, at_least(1))
    refresh_ttl: int = setting(2592000, at_least(1))
    leeway: int = setting(30, between(0, 300))
    rotate_refresh: bool = setting(True, BOOLEAN)
    reuse_interval: int = setting(10, at_least(0))
    reuse_window: int = setting(86400, at_least(0))
    strict_rotation: bool = setting(False, BOOLEAN)
    revocation_poll: float = setting(1.0, between(0.1, 3600))
    key_rotation_days: float = setting(0, at_least(0))
    verify_cache_size: int = setting(10000, at_least(1))
    key_reload_interval: float = setting(10.0, between(0.01, 3600))
    jwks_max_age: int = setting(20, between(0, 86400))

    @property
    def expiry_leeway(self) -> int:
        """Clock skew accepted on `exp`: `leeway`, but never more than a tenth of the
        access token's lifetime, so skew cannot multiply a short token's life."""
        return min(self.leeway, self.access_ttl // 10)

    @property
    def revocation_ttl(self) -> int:
        """How long a revoked session id must be remembered: past that, no access token
        carrying it can still be valid."""
        return self.access_ttl + self.expiry_leeway


@dataclass(frozen=True)
class PasswordSettings:
    bcrypt_rounds: int = setting(12, between(4, 31))
    min_length: int = setting(8, at_least(1))
    max_length: int = setting(128, at_least(64))
    min_strength: int = setting(2, between(0, 4))
    hash_workers: int = setting(0, between(0, 256))
    max_pending_hashes: int = setting(64, at_least(1))

    @property
    def workers(self) -> int:
        """Hashing threads: by default leave one core to the event loop."""
        return self.hash_workers or max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool = setting(True, BOOLEAN)
    signin_ip_limit: int = setting(100, at_least(1))
    signin_ip_window: int = setting(900, at_least(1))
    signin_pair_limit: int = setting(20, at_least(1))
    signin_pair_window: int = setting(900, at_least(1))
    signin_account_limit: int = setting(50, at_least(1))
    signin_account_window: int = setting(3600, at_least(1))
    known_address_ttl: int = setting(2592000, at_least(1))
    signup_ip_limit: int = setting(100, at_least(1))
    signup_ip_window: int = setting(3600, at_least(1))
    refresh_ip_limit: int = setting(600, at_least(1))
    refresh_ip_window: int = setting(60, at_least(1))
    signout_ip_limit: int = setting(120, at_least(1))
    signout_ip_window: int = setting(60, at_least(1))
    signin_success_account_limit: int = setting(60, at_least(1))
    signin_success_account_window: int = setting(900, at_least(1))
    signin_success_ip_limit: int = setting(300, at_least(1))
    signin_success_ip_window: int = setting(900, at_least(1))
    max_hashes_per_account: int = setting(2, at_least(1))
    max_hashes_per_address: int = setting(4, at_least(1))
    process_share: float = setting(0.5, between(0, 1))
    ipv6_prefix: int = setting(64, between(32, 128))


@dataclass(frozen=True)
class PurgeSettings:
    interval: float = setting(3600, above(0))
    batch_size: int = setting(250, between(1, 100000))


@dataclass(frozen=True)
class CookieSettings:
    """The session cookie of cookie mode (browsers)."""

    name: str = setting("auth_session", COOKIE_NAME)
    secure: bool = setting(True, BOOLEAN)
    samesite: str = setting("Strict", one_of(*SAMESITE))


@dataclass(frozen=True)
class MetricsSettings:
    enabled: bool = setting(True, BOOLEAN)


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    passwords: PasswordSettings = field(default_factory=PasswordSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    purge: PurgeSettings = field(default_factory=PurgeSettings)
    cookies: CookieSettings = field(default_factory=CookieSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)

    def __post_init__(self) -> None:
        validate(self)


# Reading


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read a settings file (settings.toml by default), then apply AUTH_* overrides.
    Without a path and without the repository's settings.toml (an installed package),
    the defaults and the overrides. Raises SettingsError, with one line saying what to
    fix, for anything wrong."""
    if path is None and not DEFAULT_CONFIG.exists():
        return settings_from_mapping({}, environ)
    config = Path(path) if path else DEFAULT_CONFIG
    raw = _read_file(config)
    _resolve_storage_path(raw, config.parent)
    return settings_from_mapping(raw, environ, source=str(config))


def settings_from_mapping(
    raw: Mapping[str, object],
    environ: Mapping[str, str] | None = None,
    *,
    source: str = "the settings",
) -> Settings:
    """Settings from a mapping shaped like settings.toml (`{"tokens": {"access_ttl":
    60}}`); sections and keys left out take their defaults, and AUTH_* overrides from
    `environ` (the process environment by default) still apply."""
    environ = os.environ if environ is None else environ
    check_environment(environ)
    remaining = dict(raw)
    sections = {}
    for section in section_names():
        given = remaining.pop(section, None) or {}
        if not isinstance(given, Mapping):
            raise SettingsError(f"[{section}] in {source} must be a table")
        values = {**given, **_env_overrides(section, environ)}
        sections[section] = _build_section(section, values)
    for name in remaining:
        raise SettingsError(_unknown_in_file(name))
    return Settings(**sections)


def section_names() -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(Settings))


def setting_names() -> Iterator[tuple[str, str]]:
    """Every (section, key), in file order."""
    for section in section_names():
        for item in dataclasses.fields(_section_class(section)):
            yield section, item.name


def env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper()


def _read_file(config: Path) -> dict:
    try:
        return tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {config}") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise SettingsError(f"cannot read settings file {config}: {reason}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{config}: {exc}") from None


def check_environment(environ: Mapping[str, str]) -> None:
    """Refuse an AUTH_ variable that looks meant for this server but names no setting,
    so that a typo (AUTH_TOKENS_SECRETT) cannot silently leave the default in force.

    Checked: any name that is a setting's name but for case; any whose first word after
    AUTH_ is a section (SERVER, STORAGE, TOKENS, PASSWORDS, RATELIMIT, PURGE, COOKIES,
    METRICS) or close to one (TOKEN_, PASSWORD_); any close to a whole setting's name.
    Left alone: other AUTH_ variables (AUTH_TEST_POSTGRES_DSN of the test suite, or
    another program's AUTH_SECRET), which this server never reads."""
    known = {env_name(section, key) for section, key in setting_names()}
    sections = [name.upper() for name in section_names()]
    for name in sorted(environ):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or name in known:
            continue
        head = upper[len(ENV_PREFIX) :].split("_", 1)[0]
        if (
            upper in known
            or difflib.get_close_matches(head, sections, 1, SECTION_CUTOFF)
            or difflib.get_close_matches(upper, known, 1, NAME_CUTOFF)
        ):
            closest = difflib.get_close_matches(upper, known, 1, 0.0)
            hint = f" (did you mean {closest[0]}?)" if closest else ""
            raise SettingsError(f"unknown setting {name}{hint}")


def _unknown_in_file(name: str) -> str:
    sections = section_names()
    closest = difflib.get_close_matches(name, sections, 1, 0.6)
    if closest:
        return f"unknown settings section [{name}] (did you mean [{closest[0]}]?)"
    keys = [f"{s}.{k}" for s, k in setting_names()]
    closest = difflib.get_close_matches(name, [k.split(".")[1] for k in keys], 1, 0.6)
    hint = (
        next((k for k in keys if k.endswith(f".{closest[0]}")), None)
        if closest
        else None
    )
    where = f" (did you mean {hint}?)" if hint else f"; sections: {', '.join(sections)}"
    return f"unknown setting {name} outside any section{where}"


def _resolve_storage_path(raw: dict, base: Path) -> None:
    """A relative storage.path in a file is relative to that file's folder."""
    storage = raw.get("storage")
    path = storage.get("path") if isinstance(storage, dict) else None
    if isinstance(path, str) and path and not Path(path).is_absolute():
        storage["path"] = str(base / path)


def _section_class(name: str) -> type:
    return typing.get_type_hints(Settings)[name]


def _env_overrides(section: str, environ: Mapping[str, str]) -> dict:
    overrides = {}
    for item in dataclasses.fields(_section_class(section)):
        name = env_name(section, item.name)
        if name in environ:
            overrides[item.name] = _EnvText(environ[name])
    return overrides


class _EnvText(str):
    """A value that came from the environment, still to be parsed by the field type."""


def _build_section(section: str, values: dict) -> object:
    cls = _section_class(section)
    hints = typing.get_type_hints(cls)
    for key in values:
        if key not in hints:
            closest = difflib.get_close_matches(key, list(hints), 1, 0.0)
            hint = f" (did you mean {section}.{closest[0]}?)" if closest else ""
            raise SettingsError(f"unknown setting {section}.{key}{hint}")
    parsed = {k: _coerce(f"{section}.{k}", hints[k], v) for k, v in values.items()}
    return cls(**parsed)


def _coerce(name: str, hint: object, value: object) -> object:
    """The value as the field's type: an environment value parsed from its text, a
    file's list as a tuple, a whole float as an int. Anything else is left for
    `validate` to refuse with the rule's message."""
    if isinstance(value, _EnvText):
        return _parse_env(name, hint, value)
    if typing.get_origin(hint) is tuple and isinstance(value, list):
        return tuple(value) if all(isinstance(v, str) for v in value) else value
    if hint is int and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _parse_env(name: str, hint: object, value: str) -> object:
    if hint is bool:
        if value in ("true", "false"):
            return value == "true"
        raise SettingsError(f"{name} must be true or false, not {value!r}")
    if hint is int:
        try:
            return int(value)
        except ValueError:
            raise SettingsError(
                f"{name} must be a whole number, not {value!r}"
            ) from None
    if hint is float:
        try:
            return float(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, not {value!r}") from None
    if typing.get_origin(hint) is tuple:
        return tuple(part.strip() for part in value.split(",") if part.strip())
    return str(value)


# Validation


def validate(settings: Settings) -> None:
    """Refuse settings that would run insecurely or not at all: each field's type and
    rule, then the rules between fields. Raises SettingsError with the first problem."""
    for section in section_names():
        values = getattr(settings, section)
        hints = typing.get_type_hints(type(values))
        for item in dataclasses.fields(values):
            name, value = f"{section}.{item.name}", getattr(values, item.name)
            problem = _type_problem(hints[item.name], value, item.metadata[_RULE])
            problem = problem or item.metadata[_RULE].problem(value)
            if problem:
                raise SettingsError(f"{name} {problem}")
    for ok, message in _relations(settings):
        if not ok:
            raise SettingsError(message)


def _type_problem(hint: object, value: object, rule: Rule) -> str | None:
    secret = getattr(rule, "secret", False)
    shown = "" if secret else f", not {value!r}"
    if hint is bool:
        return None if isinstance(value, bool) else f"must be true or false{shown}"
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number{shown}"
        if not math.isfinite(value):
            return f"must be a finite number{shown}"
        if hint is int and not float(value).is_integer():
            return f"must be a whole number{shown}"
        return None
    if typing.get_origin(hint) is tuple:
        ok = isinstance(value, (tuple, list)) and all(isinstance(v, str) for v in value)
        return None if ok else f"must be a list of strings{shown}"
    return None if isinstance(value, str) else f"must be a string{shown}"


def _relations(settings: Settings) -> list[tuple[bool, str]]:
    """Rules between fields, each with its message."""
    tokens, storage = settings.tokens, settings.storage
    passwords, cookies = settings.passwords, settings.cookies
    return [
        (
            storage.backend != "postgres" or bool(storage.dsn),
            'storage.dsn is required with storage.backend = "postgres"',
        ),
        (
            passwords.min_length <= passwords.max_length,
            f"passwords.min_length must be at most passwords.max_length "
            f"({passwords.max_length}), not {passwords.min_length}",
        ),
        (
            tokens.reuse_window >= tokens.reuse_interval,
            f"tokens.reuse_window must be at least tokens.reuse_interval "
            f"({tokens.reuse_interval}), not {tokens.reuse_window}",
        ),
        (
            tokens.algorithm == "HS256" or not tokens.secret or tokens.private_key_file,
            f"tokens.secret is for HS256; {tokens.algorithm} needs "
            "tokens.private_key_file (or neither, to generate a key)",
        ),
        (
            tokens.algorithm != "HS256" or tokens.secret or not tokens.private_key_file,
            "tokens.private_key_file is for RS256, ES256 and EdDSA; HS256 uses "
            "tokens.secret (or neither, to generate a key)",
        ),
        (
            cookies.secure or cookies.samesite != "None",
            'cookies.samesite = "None" requires cookies.secure = true '
            "(browsers refuse it otherwise)",
        ),
        (
            cookies.secure or not cookies.name.startswith("__Secure-"),
            "cookies.name starting with __Secure- requires cookies.secure = true",
        ),
    ]
