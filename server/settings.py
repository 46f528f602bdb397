"""Settings: frozen dataclasses, one per section of settings.toml.

`load_settings` is the only reader of files and environment variables; everything else
receives a `Settings` and tests build one directly with `dataclasses.replace`.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "settings.toml"
ENV_PREFIX = "AUTH_"
ALGORITHMS = ("HS256", "RS256", "ES256", "EdDSA")
BACKENDS = ("sqlite", "memory", "postgres")
MIN_SECRET_BYTES = 32


class SettingsError(ValueError):
    """A setting is missing, of the wrong type or out of range; the message says which."""


@dataclass(frozen=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 1
    max_body_bytes: int = 16384
    trusted_proxies: tuple[str, ...] = ()
    cors_origins: tuple[str, ...] = ()
    log_level: str = "INFO"
    body_timeout: float = 30.0
    max_connections: int = 1000


@dataclass(frozen=True)
class StorageSettings:
    backend: str = "sqlite"
    path: str = "data/auth.db"
    dsn: str = ""
    pool_size: int = 10

    @property
    def data_dir(self) -> Path:
        """The folder holding the database file and generated keys."""
        return Path(self.path).parent


@dataclass(frozen=True)
class TokenSettings:
    algorithm: str = "HS256"
    secret: str = ""
    private_key_file: str = ""
    issuer: str = "auth-server"
    audience: str = ""
    access_ttl: int = 900
    refresh_ttl: int = 2592000
    leeway: int = 30
    rotate_refresh: bool = True
    reuse_interval: int = 10
    strict_rotation: bool = False
    revocation_poll: float = 1.0
    key_rotation_days: float = 0
    verify_cache_size: int = 10000
    key_reload_interval: float = 10.0
    jwks_max_age: int = 20

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
    bcrypt_rounds: int = 12
    min_length: int = 8
    max_length: int = 128
    min_strength: int = 1
    hash_workers: int = 0
    max_pending_hashes: int = 64

    @property
    def workers(self) -> int:
        """Hashing threads: by default leave one core to the event loop."""
        return self.hash_workers or max(1, (os.cpu_count() or 2) - 1)


@dataclass(frozen=True)
class RateLimitSettings:
    enabled: bool = True
    signin_ip_limit: int = 100
    signin_ip_window: int = 900
    signin_pair_limit: int = 20
    signin_pair_window: int = 900
    signin_account_limit: int = 100
    signin_account_window: int = 3600
    known_address_ttl: int = 2592000
    signup_ip_limit: int = 100
    signup_ip_window: int = 3600
    refresh_ip_limit: int = 600
    refresh_ip_window: int = 60


@dataclass(frozen=True)
class PurgeSettings:
    interval: float = 3600
    batch_size: int = 250


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    passwords: PasswordSettings = field(default_factory=PasswordSettings)
    ratelimit: RateLimitSettings = field(default_factory=RateLimitSettings)
    purge: PurgeSettings = field(default_factory=PurgeSettings)

    def __post_init__(self) -> None:
        validate(self)


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read a settings file (settings.toml by default), then apply AUTH_* overrides."""
    config = Path(path) if path else DEFAULT_CONFIG
    environ = os.environ if environ is None else environ
    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingsError(f"settings file not found: {config}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{config}: {exc}") from None
    _resolve_storage_path(raw, config.parent)
    sections = {}
    for section in dataclasses.fields(Settings):
        values = dict(raw.pop(section.name, {}) or {})
        values.update(_env_overrides(section.name, environ))
        sections[section.name] = _build_section(section.name, values)
    if raw:
        raise SettingsError(f"unknown settings section(s): {', '.join(sorted(raw))}")
    return Settings(**sections)


def _resolve_storage_path(raw: dict, base: Path) -> None:
    """A relative storage.path in a file is relative to that file's folder."""
    storage = raw.get("storage") or {}
    path = storage.get("path")
    if isinstance(path, str) and path and not Path(path).is_absolute():
        storage["path"] = str(base / path)


def _section_class(name: str) -> type:
    return typing.get_type_hints(Settings)[name]


def _env_overrides(section: str, environ: Mapping[str, str]) -> dict:
    prefix = f"{ENV_PREFIX}{section.upper()}_"
    known = {f.name for f in dataclasses.fields(_section_class(section))}
    overrides = {}
    for name, value in environ.items():
        if name.startswith(prefix) and name[len(prefix) :].lower() in known:
            overrides[name[len(prefix) :].lower()] = _EnvText(value)
    return overrides


class _EnvText(str):
    """A value that came from the environment, still to be parsed by the field type."""


def _build_section(section: str, values: dict) -> object:
    cls = _section_class(section)
    hints = typing.get_type_hints(cls)
    unknown = set(values) - set(hints)
    if unknown:
        raise SettingsError(
            f"unknown setting(s): {', '.join(f'{section}.{k}' for k in sorted(unknown))}"
        )
    parsed = {k: _coerce(f"{section}.{k}", hints[k], v) for k, v in values.items()}
    return cls(**parsed)


def _coerce(name: str, hint: object, value: object) -> object:
    from_env = isinstance(value, _EnvText)
    if hint is bool:
        if from_env and value in ("true", "false"):
            return value == "true"
        if isinstance(value, bool):
            return value
        raise SettingsError(f"{name} must be true or false, not {value!r}")
    if hint in (int, float):
        return _coerce_number(name, hint, value, from_env)
    if typing.get_origin(hint) is tuple:
        if from_env:
            return tuple(part.strip() for part in value.split(",") if part.strip())
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise SettingsError(f"{name} must be a list of strings")
    if isinstance(value, str):
        return str(value)
    raise SettingsError(f"{name} must be a string, not {value!r}")


def _coerce_number(name: str, hint: type, value: object, from_env: bool) -> int | float:
    if from_env:
        try:
            return hint(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SettingsError(f"{name} must be a number, not {value!r}")
    if hint is int and not float(value).is_integer():
        raise SettingsError(f"{name} must be a whole number, not {value!r}")
    return hint(value)


def validate(settings: Settings) -> None:
    """Refuse settings that would run insecurely or not at all, with a clear message."""
    tokens, storage = settings.tokens, settings.storage
    checks = [
        (
            tokens.algorithm in ALGORITHMS,
            f"tokens.algorithm must be one of {', '.join(ALGORITHMS)}",
        ),
        (
            not tokens.secret or len(tokens.secret.encode()) >= MIN_SECRET_BYTES,
            f"tokens.secret must be at least {MIN_SECRET_BYTES} bytes (or empty to generate one)",
        ),
        (
            storage.backend in BACKENDS,
            f"storage.backend must be one of {', '.join(BACKENDS)}",
        ),
        (
            storage.backend != "postgres" or bool(storage.dsn),
            'storage.dsn is required with storage.backend = "postgres"',
        ),
        (
            tokens.access_ttl > 0 and tokens.refresh_ttl > 0,
            "token lifetimes must be positive",
        ),
        (
            tokens.leeway >= 0 and tokens.reuse_interval >= 0,
            "tokens.leeway and reuse_interval must be >= 0",
        ),
        (tokens.revocation_poll > 0, "tokens.revocation_poll must be positive"),
        (
            4 <= settings.passwords.bcrypt_rounds <= 31,
            "passwords.bcrypt_rounds must be 4..31",
        ),
        (
            1 <= settings.passwords.min_length <= settings.passwords.max_length,
            "passwords.min_length must be between 1 and passwords.max_length",
        ),
        (
            settings.passwords.max_length >= 64,
            "passwords.max_length must allow at least 64",
        ),
        (
            0 <= settings.passwords.min_strength <= 4,
            "passwords.min_strength must be 0..4",
        ),
        (settings.server.workers >= 1, "server.workers must be at least 1"),
        (
            settings.server.max_body_bytes >= 1024,
            "server.max_body_bytes must be at least 1024",
        ),
        (
            settings.purge.interval > 0 and settings.purge.batch_size > 0,
            "purge settings must be positive",
        ),
        (settings.server.body_timeout > 0, "server.body_timeout must be positive"),
        (
            settings.server.max_connections >= 1,
            "server.max_connections must be at least 1",
        ),
        (
            tokens.key_reload_interval > 0,
            "tokens.key_reload_interval must be positive",
        ),
        (tokens.jwks_max_age >= 0, "tokens.jwks_max_age must be >= 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise SettingsError(message)
