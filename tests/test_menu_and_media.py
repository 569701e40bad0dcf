"""`minyi wechat menu push` and residents' media downloads, online against the fake
WeChat API and offline (recorded in the outbox)."""

from __future__ import annotations

import asyncio
import json
import os
import tomllib

import pytest
from sqlmodel import select

from bot.cli import main
from bot.settings import CONFIG_DIR
from storage.db import Database
from storage.models import Attachment, Outbox, Ticket
from tests import wechat
from tests.conftest import services_of
from tests.fake_wechat import (MEDIA_GET, MENU_CREATE, FakeWeChat, fake, fake_server, outbox_rows,  # noqa: F401
                               settle, start_app)

with open(CONFIG_DIR / "menu.toml", "rb") as _fh:
    MENU = tomllib.load(_fh)

PHOTO = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00 elevator photo \xff\xd9"


# ---------------------------------------------------------------- media


async def report_with_photo(client, openid: str, media_id: str = "media-img-1") -> str:  # type: ignore[no-untyped-def]
    sender = wechat.Sender(client)
    await sender.reply(wechat.event(openid, "subscribe"))
    await sender.reply(wechat.text(openid, "同意"))
    await sender.reply(wechat.image(openid, media_id))  # starts a draft
    return await sender.reply(wechat.text(openid, "1"))  # submit


async def attachments_of(services) -> list[Attachment]:  # type: ignore[no-untyped-def]
    async with services.db.session() as s:
        return list((await s.exec(select(Attachment).order_by(Attachment.id))).all())


async def only_ticket(services) -> Ticket:  # type: ignore[no-untyped-def]
    async with services.db.session() as s:
        [ticket] = (await s.exec(select(Ticket))).all()
        return ticket


async def test_photo_is_downloaded_into_the_ticket_folder(start_app, fake: FakeWeChat, new_openid):
    fake.add_media("media-img-1", PHOTO)
    client = await start_app()
    services = services_of(client)
    reply = await report_with_photo(client, new_openid())
    assert "受理" in reply
    await services.tasks.drain()

    ticket = await only_ticket(services)
    [attachment] = await attachments_of(services)
    assert attachment.kind == "image" and attachment.media_id == "media-img-1"
    assert attachment.local_path == f"media/{ticket.id}/{attachment.id}.jpg"
    stored = services.settings.data_dir / attachment.local_path
    assert stored.parent == services.settings.data_dir / "media" / str(ticket.id)
    assert stored.read_bytes() == PHOTO
    assert [c.query["media_id"] for c in fake.calls_to(MEDIA_GET)] == ["media-img-1"]
    assert await outbox_rows(services, kind="media") == []


async def test_photo_sent_after_the_ticket_is_downloaded_too(start_app, fake: FakeWeChat, new_openid):
    fake.add_media("media-img-1", PHOTO)
    fake.add_media("media-voice-2", b"#!AMR\n voice", content_type="audio/amr")
    client = await start_app()
    services = services_of(client)
    openid = new_openid()
    await report_with_photo(client, openid)
    reply = await wechat.Sender(client).reply(wechat.voice(openid, media_id="media-voice-2"))
    assert reply
    await services.tasks.drain()

    ticket = await only_ticket(services)
    photo, voice = await attachments_of(services)
    assert voice.ticket_id == ticket.id and voice.kind == "voice"
    assert voice.local_path == f"media/{ticket.id}/{voice.id}.amr"
    assert (services.settings.data_dir / voice.local_path).read_bytes() == b"#!AMR\n voice"
    assert photo.local_path is not None
    assert sorted(c.query["media_id"] for c in fake.delivered(MEDIA_GET)) == ["media-img-1", "media-voice-2"]


async def test_expired_media_is_skipped_and_the_ticket_stands(start_app, fake: FakeWeChat, new_openid):
    client = await start_app()  # the fake knows no media: media/get answers 40007
    services = services_of(client)
    assert "受理" in await report_with_photo(client, new_openid(), "media-expired")
    await services.tasks.drain()
    [attachment] = await attachments_of(services)
    assert attachment.local_path is None
    assert [c.errcode for c in fake.calls_to(MEDIA_GET)] == [40007]
    assert not (services.settings.data_dir / "media").exists()


async def test_offline_media_download_is_recorded_in_the_outbox(start_app, fake: FakeWeChat, new_openid):
    client = await start_app(online=False)
    services = services_of(client)
    assert "受理" in await report_with_photo(client, new_openid())
    await services.tasks.drain()
    await settle(services)

    ticket = await only_ticket(services)
    [attachment] = await attachments_of(services)
    assert attachment.local_path is None
    [row] = await outbox_rows(services, kind="media")
    assert row.status == "offline"
    assert row.payload == {"media_id": "media-img-1", "ticket_id": ticket.id, "attachment_id": attachment.id,
                           "kind": "image"}
    assert not (services.settings.data_dir / "media").exists()
    assert fake.calls == []


# ---------------------------------------------------------------- menu push


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path, database_url: str):  # type: ignore[no-untyped-def]
    for name in list(os.environ):
        if name.startswith("MINYI_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MINYI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MINYI_DATABASE_URL", database_url)
    return monkeypatch


def go_online(env: pytest.MonkeyPatch, fake: FakeWeChat, server) -> None:  # type: ignore[no-untyped-def]
    env.setenv("MINYI_WECHAT_API_BASE", str(server.make_url("")))
    env.setenv("MINYI_WECHAT_APPID", fake.appid)
    env.setenv("MINYI_WECHAT_SECRET", fake.secret)


async def run_cli(*argv: str) -> int:
    """bot.cli.main runs its own event loop: give it a thread while the fake serves in this one."""
    return await asyncio.to_thread(main, list(argv))


async def outbox_in(database_url: str) -> list[Outbox]:
    db = Database(database_url)
    try:
        async with db.session() as s:
            return list((await s.exec(select(Outbox).order_by(Outbox.id))).all())
    finally:
        await db.close()


async def test_menu_push_publishes_config_menu(cli_env, fake: FakeWeChat, fake_server, capsys):
    go_online(cli_env, fake, fake_server)
    assert await run_cli("wechat", "menu", "push") == 0
    [call] = fake.calls_to(MENU_CREATE)
    assert call.errcode == 0  # the fake validates button counts, name lengths and keys like WeChat
    assert call.body == MENU
    assert [b["name"] for b in call.body["button"]] == ["我要反映", "我的诉求", "更多"]
    assert call.query["access_token"] == fake.current_token
    assert "菜单已发布：3 个一级菜单" in capsys.readouterr().out


async def test_menu_push_reports_a_rejected_menu(cli_env, fake: FakeWeChat, fake_server, capsys):
    go_online(cli_env, fake, fake_server)
    fake.fail(MENU_CREATE, errcode=40018)
    assert await run_cli("wechat", "menu", "push") == 1
    assert "40018" in capsys.readouterr().err


async def test_menu_push_offline_is_recorded_in_the_outbox(cli_env, fake: FakeWeChat, fake_server, capsys,
                                                           database_url):
    cli_env.setenv("MINYI_WECHAT_API_BASE", str(fake_server.make_url("")))  # reachable, but no secret
    assert await run_cli("migrate") == 0
    capsys.readouterr()
    assert await run_cli("wechat", "menu", "push") == 0
    assert "离线模式" in capsys.readouterr().out
    [row] = await outbox_in(database_url)
    assert (row.kind, row.status) == ("menu", "offline")
    assert row.payload == MENU
    assert fake.calls == []


async def test_menu_push_dry_run_prints_json_and_sends_nothing(cli_env, fake: FakeWeChat, fake_server, capsys):
    go_online(cli_env, fake, fake_server)
    assert await run_cli("wechat", "menu", "push", "--dry-run") == 0
    assert json.loads(capsys.readouterr().out) == MENU
    assert fake.calls == []
