"""Settings: config/minyi.toml defaults, a MINYI_CONFIG overlay, MINYI_* variables."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from bot.app import create_app
from bot.settings import CONFIG_DIR, load_settings


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_defaults_come_from_config_minyi_toml():
    with open(CONFIG_DIR / "minyi.toml", "rb") as fh:
        toml = tomllib.load(fh)
    settings = load_settings({})
    for section, values in toml.items():
        for key, value in values.items():
            assert getattr(getattr(settings, section), key) == value, f"{section}.{key}"
    assert settings.server.port == 8080 and isinstance(settings.server.port, int)
    assert settings.data_dir == Path("./data").resolve()
    assert settings.database_url == f"sqlite+aiosqlite:///{Path('./data').resolve() / 'minyi.db'}"
    assert settings.is_sqlite and settings.auto_migrate and settings.load_demo


def test_short_aliases_for_data_dir_and_database_url(tmp_path):
    settings = load_settings({"MINYI_DATA_DIR": str(tmp_path / "d")})
    assert settings.data.dir == str(tmp_path / "d")
    assert settings.data_dir == tmp_path / "d"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path / 'd' / 'minyi.db'}"

    url = "postgresql+asyncpg://minyi:pw@db.example/minyi"
    settings = load_settings({"MINYI_DATABASE_URL": url, "MINYI_DATA_DIR": str(tmp_path)})
    assert settings.database_url == url
    assert not settings.is_sqlite
    assert not settings.auto_migrate and not settings.load_demo  # "auto" means: only for SQLite


def test_section_key_variables_override_with_types():
    settings = load_settings({
        "MINYI_SERVER_PORT": "9001",
        "MINYI_SERVER_HOST": "0.0.0.0",
        "MINYI_WECHAT_HTTP_TIMEOUT_SECONDS": "2.5",
        "MINYI_WECHAT_MAX_RETRIES": "7",
        "MINYI_WECHAT_REQUIRE_ENCRYPTION": "true",
        "MINYI_DATABASE_ECHO": "yes",
        "MINYI_DIALOG_TIMEOUT_MINUTES": "5",
        "MINYI_WECHAT_TOKEN": "tok",
    })
    assert settings.server.port == 9001 and type(settings.server.port) is int
    assert settings.server.host == "0.0.0.0"
    assert settings.wechat.http_timeout_seconds == 2.5 and type(settings.wechat.http_timeout_seconds) is float
    assert settings.wechat.max_retries == 7 and type(settings.wechat.max_retries) is int
    assert settings.wechat.require_encryption is True
    assert settings.database.echo is True
    assert settings.dialog.timeout_minutes == 5
    assert settings.wechat.token == "tok"
    for false in ("false", "0", "no", "off"):
        assert load_settings({"MINYI_WECHAT_REQUIRE_ENCRYPTION": false}).wechat.require_encryption is False
    with pytest.raises(ValueError):
        load_settings({"MINYI_SERVER_PORT": "eighty"})
    # Variables that name no setting are not settings.
    assert load_settings({"MINYI_SERVER_NOPE": "1"}) == load_settings({})


def test_extra_toml_file_overlays_defaults_and_the_environment_wins(tmp_path):
    extra = write(tmp_path / "site.toml", '[server]\nport = 9100\npublic_url = "https://minyi.example"\n'
                                          '[wechat]\nappid = "wxsite"\nhttp_timeout_seconds = 4\n')
    settings = load_settings({"MINYI_CONFIG": extra})
    assert settings.server.port == 9100
    assert settings.server.public_url == "https://minyi.example"
    assert settings.server.host == "127.0.0.1"  # untouched keys keep the defaults
    assert settings.wechat.appid == "wxsite"
    assert settings.wechat.http_timeout_seconds == 4.0 and type(settings.wechat.http_timeout_seconds) is float
    settings = load_settings({"MINYI_CONFIG": extra, "MINYI_SERVER_PORT": "9200"})
    assert settings.server.port == 9200 and settings.wechat.appid == "wxsite"


def test_links_point_at_this_server_unless_a_public_url_is_set(tmp_path):
    """`./dev serve --port 8766` (cmd_serve lays host and port over the settings) sends
    回访 and menu links to port 8766, not to the default 8080; a configured public_url wins."""
    served = load_settings({}).replace(server={"host": "127.0.0.1", "port": "8766"})
    assert (served.server.public_url, served.server.base_url) == ("", "http://127.0.0.1:8766")
    assert load_settings({}).replace(server={"host": "0.0.0.0", "port": "80"}).server.base_url == "http://127.0.0.1:80"
    public = load_settings({"MINYI_SERVER_PUBLIC_URL": "https://minyi.example/"}).replace(server={"port": "8766"})
    assert public.server.base_url == "https://minyi.example"


@pytest.mark.parametrize("text", ['[server]\nprot = 1\n', '[servr]\nport = 1\n', '[wechat]\nsecrett = "x"\n'])
def test_unknown_keys_in_a_toml_file_are_refused(tmp_path, text):
    with pytest.raises(ValueError):
        load_settings({"MINYI_CONFIG": write(tmp_path / "bad.toml", text)})


def test_offline_mode_and_the_simulator_follow_the_secret():
    offline = load_settings({})
    assert offline.wechat.secret == "" and offline.wechat.offline
    assert offline.simulator_enabled
    online = load_settings({"MINYI_WECHAT_SECRET": "s3cret"})
    assert not online.wechat.offline
    assert not online.simulator_enabled
    assert load_settings({"MINYI_WECHAT_SECRET": "s3cret", "MINYI_SIMULATOR_ENABLED": "true"}).simulator_enabled
    assert not load_settings({"MINYI_SIMULATOR_ENABLED": "false"}).simulator_enabled


@pytest.mark.parametrize("token", ["", "   "])
def test_create_app_refuses_an_empty_token(tmp_path, token):
    settings = load_settings({"MINYI_DATA_DIR": str(tmp_path), "MINYI_WECHAT_TOKEN": token})
    with pytest.raises(ValueError, match="TOKEN"):
        create_app(settings)
    assert create_app(load_settings({"MINYI_DATA_DIR": str(tmp_path)})) is not None
