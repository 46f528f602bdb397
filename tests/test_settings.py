"""settings.toml, its AUTH_<SECTION>_<KEY> overrides, and validation at start: every
setting has a rule, every bad value is one message naming the setting and what it must
be, and a misspelt AUTH_ variable is refused with the closest real name."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from server import cli
from server.settings import (
    DEFAULT_CONFIG,
    Settings,
    SettingsError,
    TokenSettings,
    env_name,
    load_settings,
    setting_names,
)
from tests.serverproc import run_cli, server_env

HOST_RULE = "must be a host name or IP address such as 127.0.0.1, 0.0.0.0 or ::"
ORIGIN_RULE = (
    'must be "*" or an origin as browsers send it: scheme://host[:port] in lower '
    "case, no path, no default port (e.g. http://localhost:8081)"
)
NETWORK_RULE = "must be an IP address or network such as 10.0.0.0/8 or ::1"
TEXT_RULE = "must be text without control characters"
# One bad value per setting, and the exact message it gets.
INVALID = [
    ("server", "host", "", f"{HOST_RULE}, not ''"),
    ("server", "port", "0", "must be between 1 and 65535, not 0"),
    ("server", "workers", "0", "must be between 1 and 256, not 0"),
    ("server", "max_body_bytes", "512", "must be between 1024 and 1048576, not 512"),
    (
        "server",
        "trusted_proxies",
        "10.0.0.0/8, proxy.local",
        f"entry 'proxy.local' {NETWORK_RULE}",
    ),
    (
        "server",
        "cors_origins",
        "http://localhost:8081/",
        f"entry 'http://localhost:8081/' {ORIGIN_RULE}",
    ),
    (
        "server",
        "log_level",
        "verbose",
        "must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL (any case), not 'verbose'",
    ),
    ("server", "demo_page", "yes", "must be true or false, not 'yes'"),
    ("server", "body_timeout", "0", "must be between 0.1 and 3600, not 0.0"),
    ("server", "max_connections", "0", "must be between 1 and 1000000, not 0"),
    ("server", "max_websockets_per_user", "0", "must be between 1 and 100000, not 0"),
    (
        "server",
        "max_websockets_per_address",
        "0",
        "must be between 1 and 1000000, not 0",
    ),
    ("server", "dialects", "bezkoder,bezkoder", "lists 'bezkoder' more than once"),
    (
        "storage",
        "backend",
        "mysql",
        "must be one of sqlite, memory, postgres, not 'mysql'",
    ),
    ("storage", "path", " ", "must be non-empty text, not ' '"),
    (
        "storage",
        "dsn",
        "mysql://root:hunter2@db/auth",
        "must be empty or a postgresql:// URL",
    ),
    ("storage", "pool_size", "0", "must be between 1 and 1000, not 0"),
    ("storage", "command_timeout", "0", "must be between 0.1 and 3600, not 0.0"),
    ("storage", "acquire_timeout", "-1", "must be between 0.1 and 3600, not -1.0"),
    (
        "tokens",
        "algorithm",
        "HS512",
        "must be one of HS256, RS256, ES256, EdDSA, not 'HS512'",
    ),
    (
        "tokens",
        "secret",
        "too-short",
        "must be at least 32 bytes (or empty to generate one)",
    ),
    ("tokens", "private_key_file", "key\x07.pem", f"{TEXT_RULE}, not 'key\\x07.pem'"),
    ("tokens", "issuer", "", "must be non-empty text, not ''"),
    ("tokens", "audience", "api\n", f"{TEXT_RULE}, not 'api\\n'"),
    ("tokens", "access_ttl", "0", "must be at least 1, not 0"),
    ("tokens", "refresh_ttl", "-5", "must be at least 1, not -5"),
    ("tokens", "leeway", "301", "must be between 0 and 300, not 301"),
    ("tokens", "rotate_refresh", "True", "must be true or false, not 'True'"),
    ("tokens", "reuse_interval", "-1", "must be at least 0, not -1"),
    ("tokens", "reuse_window", "-1", "must be at least 0, not -1"),
    ("tokens", "strict_rotation", "1", "must be true or false, not '1'"),
    ("tokens", "revocation_poll", "0", "must be between 0.1 and 3600, not 0.0"),
    ("tokens", "key_rotation_days", "-1", "must be at least 0, not -1.0"),
    ("tokens", "verify_cache_size", "0", "must be at least 1, not 0"),
    ("tokens", "key_reload_interval", "0", "must be between 0.01 and 3600, not 0.0"),
    ("tokens", "jwks_max_age", "-1", "must be between 0 and 86400, not -1"),
    ("passwords", "bcrypt_rounds", "3", "must be between 4 and 31, not 3"),
    ("passwords", "min_length", "0", "must be at least 1, not 0"),
    ("passwords", "max_length", "63", "must be at least 64, not 63"),
    ("passwords", "min_strength", "5", "must be between 0 and 4, not 5"),
    ("passwords", "hash_workers", "-1", "must be between 0 and 256, not -1"),
    ("passwords", "max_pending_hashes", "0", "must be at least 1, not 0"),
    ("ratelimit", "enabled", "off", "must be true or false, not 'off'"),
    ("ratelimit", "signin_ip_limit", "0", "must be at least 1, not 0"),
    ("ratelimit", "signin_ip_window", "-900", "must be at least 1, not -900"),
    ("ratelimit", "signin_pair_limit", "0", "must be at least 1, not 0"),
    ("ratelimit", "signin_pair_window", "0", "must be at least 1, not 0"),
    ("ratelimit", "signin_account_limit", "0", "must be at least 1, not 0"),
    ("ratelimit", "signin_account_window", "0", "must be at least 1, not 0"),
    ("ratelimit", "known_address_ttl", "0", "must be at least 1, not 0"),
    ("ratelimit", "signup_ip_limit", "0", "must be at least 1, not 0"),
    ("ratelimit", "signup_ip_window", "0", "must be at least 1, not 0"),
    ("ratelimit", "refresh_ip_limit", "0", "must be at least 1, not 0"),
    ("ratelimit", "refresh_ip_window", "-60", "must be at least 1, not -60"),
    ("ratelimit", "signout_ip_limit", "0", "must be at least 1, not 0"),
    ("ratelimit", "signout_ip_window", "0", "must be at least 1, not 0"),
    ("ratelimit", "signin_success_account_limit", "0", "must be at least 1, not 0"),
    ("ratelimit", "signin_success_account_window", "0", "must be at least 1, not 0"),
    ("ratelimit", "signin_success_ip_limit", "0", "must be at least 1, not 0"),
    ("ratelimit", "signin_success_ip_window", "-1", "must be at least 1, not -1"),
    ("ratelimit", "max_hashes_per_account", "0", "must be at least 1, not 0"),
    ("ratelimit", "max_hashes_per_address", "0", "must be at least 1, not 0"),
    ("ratelimit", "process_share", "1.5", "must be between 0 and 1, not 1.5"),
    ("ratelimit", "ipv6_prefix", "16", "must be between 32 and 128, not 16"),
    ("purge", "interval", "0", "must be greater than 0, not 0.0"),
    ("purge", "batch_size", "0", "must be between 1 and 100000, not 0"),
    (
        "cookies",
        "name",
        "__Host-session",
        "must be a cookie name: letters, digits and !#$%&'*+-.^_`|~, not starting "
        "with __Host-, not '__Host-session'",
    ),
    ("cookies", "secure", "no", "must be true or false, not 'no'"),
    ("cookies", "samesite", "strict", "must be one of Strict, Lax, None, not 'strict'"),
    ("metrics", "enabled", "0", "must be true or false, not '0'"),
]


def test_settings_toml_holds_every_setting_with_its_default() -> None:
    loaded = load_settings(DEFAULT_CONFIG, environ={})
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        expected = dataclasses.asdict(getattr(defaults, section.name))
        actual = dataclasses.asdict(getattr(loaded, section.name))
        if section.name == "storage":
            assert (
                Path(actual.pop("path")) == DEFAULT_CONFIG.parent / "data" / "auth.db"
            )
            expected.pop("path")
        assert actual == expected, section.name
    text = DEFAULT_CONFIG.read_text()
    for section in dataclasses.fields(Settings):
        assert f"\n[{section.name}]\n" in text
        for field in dataclasses.fields(getattr(defaults, section.name)):
            assert f"\n{field.name} = " in text, f"{section.name}.{field.name} missing"


def test_the_new_settings_and_their_defaults() -> None:
    settings = Settings()
    assert (settings.server.demo_page, settings.server.dialects) == (
        True,
        ("bezkoder",),
    )
    assert dataclasses.asdict(settings.cookies) == {
        "name": "auth_session",
        "secure": True,
        "samesite": "Strict",
    }
    assert settings.metrics.enabled is True
    assert (settings.tokens.reuse_window, settings.ratelimit.ipv6_prefix) == (86400, 64)
    assert settings.passwords.min_strength == 2


def test_environment_overrides() -> None:
    settings = load_settings(
        environ={
            "AUTH_TOKENS_ACCESS_TTL": "2",
            "AUTH_TOKENS_REFRESH_TTL": "5",
            "AUTH_SERVER_PORT": "8081",
            "AUTH_STORAGE_BACKEND": "sqlite",
            "AUTH_STORAGE_PATH": "/tmp/auth.db",
            "AUTH_PURGE_INTERVAL": "1",
            "AUTH_PASSWORDS_BCRYPT_ROUNDS": "4",
            "AUTH_RATELIMIT_ENABLED": "false",
            "AUTH_TOKENS_STRICT_ROTATION": "true",
            "AUTH_SERVER_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.2",
            "AUTH_TOKENS_REVOCATION_POLL": "0.5",
            "AUTH_SERVER_DIALECTS": "wpcodevo,bezkoder",
            "AUTH_SERVER_LOG_LEVEL": "debug",
            "AUTH_COOKIES_SAMESITE": "None",
            "AUTH_METRICS_ENABLED": "false",
            "AUTH_UNRELATED": "ignored",
        }
    )
    assert (settings.tokens.access_ttl, settings.tokens.refresh_ttl) == (2, 5)
    assert settings.server.port == 8081
    assert settings.storage.path == "/tmp/auth.db"
    assert settings.purge.interval == 1
    assert settings.passwords.bcrypt_rounds == 4
    assert settings.ratelimit.enabled is False
    assert settings.tokens.strict_rotation is True
    assert settings.server.trusted_proxies == ("127.0.0.1", "10.0.0.2")
    assert settings.tokens.revocation_poll == 0.5
    assert settings.server.dialects == ("wpcodevo", "bezkoder")
    assert settings.server.log_level == "debug"
    assert settings.cookies.samesite == "None"
    assert settings.metrics.enabled is False


def test_config_file_elsewhere(tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text(
        '[server]\nport = 9999\ncors_origins = ["https://app.example.com"]\n'
        '[storage]\npath = "db/x.db"\n[tokens]\nkey_rotation_days = 7\n'
    )
    settings = load_settings(config, environ={})
    assert settings.server.port == 9999
    assert settings.server.cors_origins == ("https://app.example.com",)
    assert settings.storage.path == str(tmp_path / "db" / "x.db")
    assert settings.tokens.access_ttl == 900
    assert settings.tokens.key_rotation_days == 7


def test_every_setting_has_a_bad_value_in_the_table() -> None:
    """A new setting needs a rule (`setting(default, rule)`) and a line above."""
    assert sorted((s, k) for s, k, _, _ in INVALID) == sorted(setting_names())


@pytest.mark.parametrize(
    ("section", "key", "value", "problem"),
    INVALID,
    ids=[f"{s}.{k}" for s, k, _, _ in INVALID],
)
def test_each_bad_setting_is_one_message_naming_it(
    section: str, key: str, value: str, problem: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={env_name(section, key): value})
    assert str(raised.value) == f"{section}.{key} {problem}"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"AUTH_TOKENS_ACCESS_TTL": "soon"},
            "tokens.access_ttl must be a whole number, not 'soon'",
        ),
        (
            {"AUTH_TOKENS_ACCESS_TTL": "1.5"},
            "tokens.access_ttl must be a whole number, not '1.5'",
        ),
        (
            {"AUTH_TOKENS_REVOCATION_POLL": "nan"},
            "tokens.revocation_poll must be a finite number, not nan",
        ),
        (
            {"AUTH_PURGE_INTERVAL": "inf"},
            "purge.interval must be a finite number, not inf",
        ),
        (
            {"AUTH_SERVER_DIALECTS": ""},
            "server.dialects must list at least one entry, each one of bezkoder, cyberwolves, wpcodevo",
        ),
        (
            {"AUTH_SERVER_DIALECTS": "bezkoder,django"},
            "server.dialects entry 'django' must be one of bezkoder, cyberwolves, wpcodevo",
        ),
        (
            {"AUTH_SERVER_CORS_ORIGINS": "http://localhost:80"},
            f"server.cors_origins entry 'http://localhost:80' {ORIGIN_RULE}",
        ),
        (
            {"AUTH_SERVER_CORS_ORIGINS": "http://Example.com"},
            f"server.cors_origins entry 'http://Example.com' {ORIGIN_RULE}",
        ),
        (
            {"AUTH_SERVER_CORS_ORIGINS": "null"},
            f"server.cors_origins entry 'null' {ORIGIN_RULE}",
        ),
        (
            {"AUTH_SERVER_TRUSTED_PROXIES": "10.0.0.0/33"},
            f"server.trusted_proxies entry '10.0.0.0/33' {NETWORK_RULE}",
        ),
        (
            {"AUTH_STORAGE_BACKEND": "postgres"},
            'storage.dsn is required with storage.backend = "postgres"',
        ),
        (
            {"AUTH_PASSWORDS_MIN_LENGTH": "100", "AUTH_PASSWORDS_MAX_LENGTH": "64"},
            "passwords.min_length must be at most passwords.max_length (64), not 100",
        ),
        (
            {"AUTH_TOKENS_REUSE_WINDOW": "5"},
            "tokens.reuse_window must be at least tokens.reuse_interval (10), not 5",
        ),
        (
            {"AUTH_COOKIES_SAMESITE": "None", "AUTH_COOKIES_SECURE": "false"},
            'cookies.samesite = "None" requires cookies.secure = true (browsers refuse it otherwise)',
        ),
        (
            {"AUTH_COOKIES_NAME": "__Secure-session", "AUTH_COOKIES_SECURE": "false"},
            "cookies.name starting with __Secure- requires cookies.secure = true",
        ),
        (
            {"AUTH_TOKENS_ALGORITHM": "RS256", "AUTH_TOKENS_SECRET": "s" * 40},
            "tokens.secret is for HS256; RS256 needs tokens.private_key_file (or neither, to generate a key)",
        ),
        (
            {"AUTH_TOKENS_PRIVATE_KEY_FILE": "/etc/auth/key.pem"},
            "tokens.private_key_file is for RS256, ES256 and EdDSA; HS256 uses tokens.secret (or neither, to generate a key)",
        ),
    ],
)
def test_bad_combinations_and_forms(environ: dict, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ=environ)
    assert str(raised.value) == message


def test_secrets_are_never_echoed() -> None:
    for environ in (
        {"AUTH_TOKENS_SECRET": "hunter2-short"},
        {"AUTH_STORAGE_BACKEND": "postgres", "AUTH_STORAGE_DSN": "mysql://u:hunter2@h"},
    ):
        with pytest.raises(SettingsError) as raised:
            load_settings(environ=environ)
        assert "hunter2" not in str(raised.value)


def test_direct_construction_is_validated_too() -> None:
    """Tests and embedders build Settings directly: the same rules apply."""
    with pytest.raises(
        SettingsError, match=r"^tokens\.verify_cache_size must be at least 1, not 0$"
    ):
        Settings(tokens=TokenSettings(verify_cache_size=0))
    with pytest.raises(
        SettingsError, match=r"^tokens\.access_ttl must be a number, not '9'$"
    ):
        Settings(tokens=TokenSettings(access_ttl="9"))  # type: ignore[arg-type]
    with pytest.raises(
        SettingsError, match=r"^tokens\.access_ttl must be a whole number, not 1\.5$"
    ):
        Settings(tokens=TokenSettings(access_ttl=1.5))  # type: ignore[arg-type]
    settings = Settings()
    with pytest.raises(
        SettingsError, match=r"^server\.workers must be between 1 and 256, not 0$"
    ):
        dataclasses.replace(
            settings, server=dataclasses.replace(settings.server, workers=0)
        )


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("AUTH_TOKENS_SECRETT", "AUTH_TOKENS_SECRET"),
        ("AUTH_TOKEN_SECRET", "AUTH_TOKENS_SECRET"),
        ("AUTH_TOKENS_ACCESS_TLL", "AUTH_TOKENS_ACCESS_TTL"),
        ("AUTH_RATE_LIMIT_ENABLED", "AUTH_RATELIMIT_ENABLED"),
        ("AUTH_RATELIMITS_ENABLED", "AUTH_RATELIMIT_ENABLED"),
        ("AUTH_PASSWORD_BCRYPT_ROUNDS", "AUTH_PASSWORDS_BCRYPT_ROUNDS"),
        ("AUTH_COOKIE_SECURE", "AUTH_COOKIES_SECURE"),
        ("AUTH_SERVER_WORKER", "AUTH_SERVER_WORKERS"),
        ("auth_server_port", "AUTH_SERVER_PORT"),
    ],
)
def test_a_misspelt_variable_is_refused_naming_the_closest_setting(
    name: str, suggestion: str
) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(environ={name: "5"})
    assert str(raised.value) == f"unknown setting {name} (did you mean {suggestion}?)"


def test_other_programs_auth_variables_are_left_alone() -> None:
    """The rule: only names that are, or nearly are, this server's are checked."""
    environ = {
        "AUTH_TEST_POSTGRES_DSN": "postgresql://postgres@127.0.0.1:5432/test",
        "AUTH_SECRET": "another program's",
        "AUTH_URL": "http://localhost:3000",
        "AUTH_USER": "me",
        "AUTHOR": "me",
        "OAUTH_TOKENS_SECRET": "x",
    }
    assert load_settings(environ=environ) == load_settings(environ={})


def test_the_file_is_checked_the_same_way(tmp_path: Path) -> None:
    cases = [
        (
            "[tokens]\naccess_tll = 5\n",
            "unknown setting tokens.access_tll (did you mean tokens.access_ttl?)",
        ),
        (
            "[tokenz]\naccess_ttl = 5\n",
            "unknown settings section [tokenz] (did you mean [tokens]?)",
        ),
        (
            "port = 8081\n",
            "unknown setting port outside any section (did you mean server.port?)",
        ),
        ("server = 5\n", f"[server] in {tmp_path / 'x.toml'} must be a table"),
        ('[server]\nport = "8081"\n', "server.port must be a number, not '8081'"),
        ("[server]\nport = 80.5\n", "server.port must be a whole number, not 80.5"),
        (
            '[server]\ntrusted_proxies = "10.0.0.1"\n',
            "server.trusted_proxies must be a list of strings, not '10.0.0.1'",
        ),
        (
            "[server]\ndialects = [1]\n",
            "server.dialects must be a list of strings, not [1]",
        ),
        (
            "[tokens]\nrotate_refresh = 1\n",
            "tokens.rotate_refresh must be true or false, not 1",
        ),
        (
            "[purge]\ninterval = nan\n",
            "purge.interval must be a finite number, not nan",
        ),
    ]
    config = tmp_path / "x.toml"
    for content, message in cases:
        config.write_text(content)
        with pytest.raises(SettingsError) as raised:
            load_settings(config, environ={})
        assert str(raised.value) == message, content


def test_an_unreadable_file_is_one_message(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as raised:
        load_settings(tmp_path, environ={})
    assert str(raised.value) == f"cannot read settings file {tmp_path}: Is a directory"
    (tmp_path / "bad.toml").write_text("[server\n")
    with pytest.raises(SettingsError, match=r"bad\.toml: "):
        load_settings(tmp_path / "bad.toml", environ={})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"AUTH_TOKENS_SECRETT": "s" * 40},
            "error: unknown setting AUTH_TOKENS_SECRETT (did you mean AUTH_TOKENS_SECRET?)",
        ),
        (
            {"AUTH_SERVER_TRUSTED_PROXIES": "10.0.0.0/8,gateway"},
            f"error: server.trusted_proxies entry 'gateway' {NETWORK_RULE}",
        ),
    ],
)
def test_run_py_stops_with_one_line_and_exit_code_2(
    tmp_path: Path, overrides: dict, message: str
) -> None:
    result = run_cli([], server_env(tmp_path, **overrides))
    assert (result.returncode, result.stdout, result.stderr) == (2, "", message + "\n")


@pytest.mark.parametrize(
    ("environ", "args", "message"),
    [
        (
            {"AUTH_TOKENS_VERIFY_CACHE_SIZE": "0"},
            ["serve"],
            "error: tokens.verify_cache_size must be at least 1, not 0",
        ),
        (
            {},
            ["--workers", "0"],
            "error: server.workers must be between 1 and 256, not 0",
        ),
        (
            {"AUTH_SERVER_LOG_LEVEL": "LOUD"},
            ["purge"],
            "error: server.log_level must be one of DEBUG, INFO, WARNING, ERROR, "
            "CRITICAL (any case), not 'LOUD'",
        ),
    ],
)
def test_every_command_stops_before_doing_anything(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environ: dict,
    args: list[str],
    message: str,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert cli.main(args) == 2
    assert capsys.readouterr() == ("", message + "\n")
