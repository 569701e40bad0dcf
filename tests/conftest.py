"""Shared fixtures. Every test that touches storage runs twice: on SQLite and on a
real PostgreSQL server this session starts (tests/pgserver.py). Set
MINYI_TEST_BACKENDS=sqlite to run only the embedded backend while iterating."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from aiohttp import web

from bot.app import create_app
from bot.settings import Settings, load_settings
from tests import wechat
from tests.pgserver import PostgresServer

BACKENDS = [b.strip() for b in os.environ.get("MINYI_TEST_BACKENDS", "sqlite,postgresql").split(",") if b.strip()]


async def _admin(url: str, *statements: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _migrate(url: str) -> None:
    from storage import migrate
    from storage.db import Database

    db = Database(url)
    try:
        await migrate.upgrade(db.engine)
    finally:
        await db.close()


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """Admin URL of a running server holding a migrated template database."""
    given = os.environ.get("MINYI_TEST_POSTGRES_URL")
    server = None
    if given:
        admin = given
    else:
        server = PostgresServer()
        admin = server.start()
    try:
        asyncio.run(_admin(admin, "DROP DATABASE IF EXISTS minyi_template", "CREATE DATABASE minyi_template"))
        asyncio.run(_migrate(admin.rsplit("/", 1)[0] + "/minyi_template"))
        yield admin
    finally:
        if server is not None:
            server.stop()


_finished_databases: list[str] = []


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'data' / 'minyi.db'}"
        return
    admin = request.getfixturevalue("postgres_template")
    # Databases of earlier tests are dropped now, not in their own teardown: the
    # app using one may be torn down after this fixture (pytest-asyncio ordering).
    drops = [f"DROP DATABASE IF EXISTS {old} WITH (FORCE)" for old in _finished_databases]
    _finished_databases.clear()
    name = "t_" + uuid.uuid4().hex[:12]
    asyncio.run(_admin(admin, *drops, f"CREATE DATABASE {name} TEMPLATE minyi_template"))
    yield admin.rsplit("/", 1)[0] + "/" + name
    _finished_databases.append(name)


def make_settings(tmp_path: Path, database_url: str, **sections: dict[str, Any]) -> Settings:
    base = load_settings({}).replace(
        data={"dir": str(tmp_path / "data")},
        database={"url": database_url, "auto_migrate": "true"},
        # A generous reply budget: on a loaded CI machine a first message (cold caches, two
        # databases' suites at once) can pass the production 4 s, and a test that expects the
        # reply in the answer must not depend on the machine's speed. The late path's tests
        # set a tiny budget of their own.
        wechat={"token": wechat.TOKEN, "appid": wechat.APPID, "aes_key": wechat.AES_KEY, "secret": "",
                "api_base": "http://127.0.0.1:9", "reply_budget_seconds": "60"},
        demo={"load": "true"},
        simulator={"enabled": "true"},
    )
    return base.replace(**sections) if sections else base


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return make_settings(tmp_path, database_url)


@pytest.fixture
async def client(aiohttp_client: Callable[..., Any], settings: Settings) -> Any:
    return await aiohttp_client(create_app(settings))


@pytest.fixture(params=["plaintext", "compatible", "safe"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def sender(client: Any) -> wechat.Sender:
    return wechat.Sender(client)


def services_of(client: Any):  # type: ignore[no-untyped-def]
    from bot.services import SERVICES

    app: web.Application = client.server.app
    return app[SERVICES]


@pytest.fixture
def new_openid() -> Callable[[], str]:
    return lambda: "o" + uuid.uuid4().hex[:27]


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """For CLI tests: a fresh data dir as the only configuration (no MINYI_* leaks in)."""
    for name in list(os.environ):
        if name.startswith("MINYI_"):
            monkeypatch.delenv(name)
    data = tmp_path / "data"
    monkeypatch.setenv("MINYI_DATA_DIR", str(data))
    return data


def run_main(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """Run the `minyi` CLI in-process: (exit code, standard output)."""
    from bot.cli import main

    try:
        code = main(list(argv))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return code, capsys.readouterr().out


@pytest.fixture
def cli_env(data_dir: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI (tests.steps.minyi) sees the app's data dir and database."""
    monkeypatch.setenv("MINYI_DATABASE_URL", database_url)
    return data_dir


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Logging as it was before the test (tests of bot/logs.py install handlers and filters)."""
    import logging

    root, aio = logging.getLogger(), logging.getLogger("asyncio")
    saved = (list(root.handlers), root.level, list(aio.filters))
    yield
    root.handlers[:], aio.filters[:] = saved[0], saved[2]
    root.setLevel(saved[1])
