"""The WeChat API client the running app holds, against the local fake of
api.weixin.qq.com: one token owner, bounded retries, clear errors."""

from __future__ import annotations

import asyncio

import pytest

from bot.wechat.client import WeChatAPIError
from tests.conftest import services_of
from tests.fake_wechat import (CUSTOM_SEND, MEDIA_GET, STABLE_TOKEN, TEMPLATE_SEND, FakeWeChat, fake,  # noqa: F401
                               fake_server, start_app)


async def client_of(start_app, **wechat_settings):  # type: ignore[no-untyped-def]
    services = services_of(await start_app(**wechat_settings))
    assert services.wechat is not None
    return services.wechat


async def test_twenty_concurrent_sends_fetch_the_token_once(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    results = await asyncio.gather(*(client.send_custom_text(f"o-resident-{i:02d}", f"消息{i}") for i in range(20)))
    assert all(r["errcode"] == 0 for r in results)
    assert fake.token_fetches == 1 and client.token_fetches == 1
    assert len(fake.calls_to(STABLE_TOKEN)) == 1
    sends = fake.delivered(CUSTOM_SEND)
    assert sorted(c.touser for c in sends) == [f"o-resident-{i:02d}" for i in range(20)]
    assert {c.query["access_token"] for c in sends} == {fake.current_token}
    token_call = fake.calls_to(STABLE_TOKEN)[0]
    assert token_call.body["grant_type"] == "client_credential"
    assert token_call.body["appid"] == fake.appid and token_call.body["secret"] == fake.secret
    assert token_call.body["force_refresh"] is False


async def test_expired_token_causes_exactly_one_refresh_not_a_storm(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    await client.send_custom_text("o-warmup", "你好")
    old_token = fake.current_token
    fake.expire_tokens()

    results = await asyncio.gather(*(client.send_custom_text(f"o-{i}", "工单进展") for i in range(20)))

    assert all(r["errcode"] == 0 for r in results)
    assert fake.token_fetches == 2 and client.token_fetches == 2
    refresh = fake.calls_to(STABLE_TOKEN)[1]
    assert refresh.body["force_refresh"] is True  # the stale token is replaced, not re-served
    expired = [c for c in fake.calls_to(CUSTOM_SEND) if c.errcode == 42001]
    assert len(expired) == 20 and {c.query["access_token"] for c in expired} == {old_token}
    delivered = [c for c in fake.delivered(CUSTOM_SEND) if c.touser != "o-warmup"]
    assert len(delivered) == 20
    assert {c.query["access_token"] for c in delivered} == {fake.current_token} != {old_token}


async def test_token_revoked_elsewhere_40001_is_refreshed_once(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    await client.send_custom_text("o-warmup", "你好")
    fake.revoke_tokens()  # e.g. someone force-refreshed with the same secret
    await asyncio.gather(*(client.send_custom_text(f"o-{i}", "通知") for i in range(5)))
    assert fake.token_fetches == 2
    assert sum(c.errcode == 40001 for c in fake.calls_to(CUSTOM_SEND)) == 5
    assert len(fake.delivered(CUSTOM_SEND)) == 6


async def test_system_busy_twice_then_success(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    fake.fail(CUSTOM_SEND, errcode=-1, times=2)
    result = await client.send_custom_text("o-busy", "请稍候")
    assert result["errcode"] == 0
    assert [c.errcode for c in fake.calls_to(CUSTOM_SEND)] == [-1, -1, 0]
    assert fake.token_fetches == 1  # busy is not a token problem


async def test_permanent_system_busy_gives_up_after_max_retries(start_app, fake: FakeWeChat):
    client = await client_of(start_app, max_retries=2)
    fake.fail(CUSTOM_SEND, errcode=-1, times=None)
    with pytest.raises(WeChatAPIError) as raised:
        await client.send_custom_text("o-busy", "请稍候")
    assert raised.value.errcode == -1
    assert len(fake.calls_to(CUSTOM_SEND)) == 3  # the first try + max_retries, then it stops


async def test_dropped_connection_is_retried(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    fake.drop(CUSTOM_SEND)
    result = await client.send_custom_text("o-flaky", "网络抖动")
    assert result["errcode"] == 0
    assert [c.errcode for c in fake.calls_to(CUSTOM_SEND)] == [-999, 0]


async def test_slow_answer_times_out_and_is_retried(start_app, fake: FakeWeChat):
    # Whole seconds: settings coerce http_timeout_seconds like its int default (0.3 would become 0).
    client = await client_of(start_app, http_timeout_seconds=1)
    fake.slow(CUSTOM_SEND, 1.2)
    result = await client.send_custom_text("o-slow", "超时重试")
    assert result["errcode"] == 0
    assert [c.delayed for c in fake.calls_to(CUSTOM_SEND)] == [1.2, 0]


async def test_unreachable_api_raises_a_wechat_error_after_bounded_retries(start_app, fake: FakeWeChat):
    client = await client_of(start_app, max_retries=1)
    fake.drop(STABLE_TOKEN, times=None)
    with pytest.raises(WeChatAPIError):
        await client.send_custom_text("o-x", "无法连接")
    assert len(fake.calls_to(STABLE_TOKEN)) == 2
    assert fake.calls_to(CUSTOM_SEND) == []


async def test_token_endpoint_busy_is_retried(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    fake.fail(STABLE_TOKEN, errcode=-1, times=1)
    assert (await client.send_custom_text("o-x", "你好"))["errcode"] == 0
    assert [c.errcode for c in fake.calls_to(STABLE_TOKEN)] == [-1, 0]


@pytest.mark.parametrize("field, errcode", [("secret", 40125), ("appid", 40013)])
async def test_wrong_credentials_fail_at_once(start_app, fake: FakeWeChat, field, errcode):
    client = await client_of(start_app, **{field: "wrong"})
    with pytest.raises(WeChatAPIError) as raised:
        await client.send_custom_text("o-x", "你好")
    assert raised.value.errcode == errcode
    assert len(fake.calls_to(STABLE_TOKEN)) == 1  # a bad secret is not retried
    assert fake.calls_to(CUSTOM_SEND) == []


async def test_client_errors_are_not_retried(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    fake.fail(CUSTOM_SEND, errcode=40003)
    with pytest.raises(WeChatAPIError) as raised:
        await client.send_custom_text("not-an-openid", "你好")
    assert raised.value.errcode == 40003 and "invalid openid" in raised.value.errmsg
    assert len(fake.calls_to(CUSTOM_SEND)) == 1


async def test_template_send_returns_msgid(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    result = await client.send_template("o-resident", "TPL-1", {"first": {"value": "工单已办结"}},
                                        url="http://127.0.0.1:8080/t/1")
    assert result["errmsg"] == "ok" and isinstance(result["msgid"], int)
    call = fake.delivered(TEMPLATE_SEND)[0]
    assert call.body == {"touser": "o-resident", "template_id": "TPL-1",
                         "data": {"first": {"value": "工单已办结"}}, "url": "http://127.0.0.1:8080/t/1"}


async def test_media_download_returns_bytes_and_unknown_media_is_40007(start_app, fake: FakeWeChat):
    client = await client_of(start_app)
    fake.add_media("MEDIA-1", b"\xff\xd8\xff\xe0 photo bytes \xff\xd9")
    assert await client.download_media("MEDIA-1") == b"\xff\xd8\xff\xe0 photo bytes \xff\xd9"
    with pytest.raises(WeChatAPIError) as raised:
        await client.download_media("MEDIA-GONE")
    assert raised.value.errcode == 40007
    assert [c.query["media_id"] for c in fake.calls_to(MEDIA_GET)] == ["MEDIA-1", "MEDIA-GONE"]
