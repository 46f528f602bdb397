"""settings.toml and its AUTH_<SECTION>_<KEY> overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from server.settings import DEFAULT_CONFIG, Settings, SettingsError, load_settings


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
        for field in dataclasses.fields(getattr(defaults, section.name)):
            assert f"\n{field.name} = " in text, f"{section.name}.{field.name} missing"


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


def test_config_file_elsewhere(tmp_path: Path) -> None:
    config = tmp_path / "other.toml"
    config.write_text('[server]\nport = 9999\n[storage]\npath = "db/x.db"\n')
    settings = load_settings(config, environ={})
    assert settings.server.port == 9999
    assert settings.storage.path == str(tmp_path / "db" / "x.db")
    assert settings.tokens.access_ttl == 900


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"AUTH_TOKENS_ACCESS_TTL": "soon"}, "tokens.access_ttl must be a number"),
        ({"AUTH_RATELIMIT_ENABLED": "yes"}, "ratelimit.enabled must be true or false"),
        (
            {"AUTH_TOKENS_SECRET": "too-short"},
            "tokens.secret must be at least 32 bytes",
        ),
        ({"AUTH_TOKENS_ALGORITHM": "HS512"}, "tokens.algorithm must be one of"),
        ({"AUTH_STORAGE_BACKEND": "postgres"}, "storage.dsn is required"),
        (
            {"AUTH_PASSWORDS_BCRYPT_ROUNDS": "3"},
            "passwords.bcrypt_rounds must be 4..31",
        ),
    ],
)
def test_bad_settings_are_refused_with_a_clear_message(
    environ: dict, message: str
) -> None:
    with pytest.raises(SettingsError, match=message.replace(".", r"\.")):
        load_settings(environ=environ)


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "typo.toml"
    config.write_text("[tokens]\naccess_tll = 5\n")
    with pytest.raises(
        SettingsError, match=r"unknown setting\(s\): tokens\.access_tll"
    ):
        load_settings(config, environ={})
