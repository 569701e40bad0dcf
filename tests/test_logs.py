"""Logs: one format (text or JSON lines) with time, level, worker, pid, request id, logger
and message, in every process including spawned `serve` workers; openids and mobile
numbers masked; the request id honoured or made, echoed and carried into the log."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import signal
import subprocess
import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from bot.app import create_app
from bot.logs import REQUEST_ID, mask, request_id_for, setup_logging
from bot.settings import LogSettings
from tests import wechat
from tests.conftest import make_settings
from tests.test_cli import MINYI, child_env, free_port, wait_healthy

OPENID = "oAbCdEfGhIjKlMnOpQrStUvW-_12"  # 'o' + 27
assert len(OPENID) == 28

TEXT_LINE = re.compile(r"^(?P<time>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d) (?P<level>[A-Z]+) "
                       r"worker=(?P<worker>\S+) pid=(?P<pid>\d+) req=(?P<req>\S+) (?P<logger>\S+): (?P<message>.*)$")




def _near_now(stamp: str) -> bool:
    at = dt.datetime.fromisoformat(stamp)
    return at.tzinfo is not None and abs((dt.datetime.now(dt.timezone.utc) - at).total_seconds()) < 10


def test_a_json_line_carries_every_field(capsys, restore_logging):
    setup_logging(LogSettings(format="json", level="INFO"), worker=3)
    capsys.readouterr()
    token = REQUEST_ID.set("req-7")
    try:
        logging.getLogger("minyi.test").warning("工单 %s 已派发", "20260509-0001")
        logging.getLogger("minyi.test").debug("not at INFO")
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("minyi.test").exception("handling failed")
    finally:
        REQUEST_ID.reset(token)
    logging.getLogger("minyi.other").info("outside a request")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 3  # one line per record, the traceback inside its JSON
    first, failed, outside = (json.loads(line) for line in lines)
    assert list(first) == ["time", "level", "worker", "pid", "request_id", "logger", "message"]
    assert _near_now(first.pop("time"))
    assert first == {"level": "WARNING", "worker": "3", "pid": os.getpid(), "request_id": "req-7",
                     "logger": "minyi.test", "message": "工单 20260509-0001 已派发"}
    assert failed["level"] == "ERROR" and failed["message"] == "handling failed"
    assert failed["exc"].startswith("Traceback") and failed["exc"].endswith("RuntimeError: boom")
    assert outside["request_id"] is None and outside["logger"] == "minyi.other"


def test_the_text_line_carries_the_same_fields(capsys, restore_logging):
    setup_logging(LogSettings(), worker=2)
    capsys.readouterr()
    logging.getLogger("bot.inbox").info("delivery %s done", "m:123")
    line = capsys.readouterr().err.rstrip("\n")
    fields = TEXT_LINE.match(line)
    assert fields, line
    assert _near_now(fields["time"])
    assert (fields["level"], fields["worker"], fields["pid"], fields["req"], fields["logger"], fields["message"]) == \
        ("INFO", "2", str(os.getpid()), "-", "bot.inbox", "delivery m:123 done")


def test_an_unknown_format_or_level_falls_back_to_text_at_info_with_a_warning(capsys, restore_logging):
    setup_logging(LogSettings(format="xml", level="LOUD"))
    err = capsys.readouterr().err
    assert "unknown [log] format 'xml'" in err and "unknown [log] level 'LOUD'" in err
    assert all(TEXT_LINE.match(line) for line in err.splitlines())
    assert logging.getLogger().level == logging.INFO


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_openids_and_mobile_numbers_are_masked_in_messages_and_tracebacks(capsys, restore_logging, fmt):
    setup_logging(LogSettings(format=fmt))
    capsys.readouterr()
    log = logging.getLogger("bot.dialogs.events")
    log.warning("template message %s to %s: %s", "1234567890123456789", OPENID, "failed")
    log.info("居民 %s 留了电话 13812345678 和 +86 139-1234-5678，工单 20260509-0001", OPENID)
    try:
        raise ValueError(f"bad row for {OPENID} (tel 15900001111)")
    except ValueError:
        log.exception("insert failed")
    err = capsys.readouterr().err
    assert OPENID not in err and "13812345678" not in err and "1234-5678" not in err and "15900001111" not in err
    messages = ([json.loads(line)["message"] for line in err.splitlines()] if fmt == "json"
                else [m["message"] for m in map(TEXT_LINE.match, err.splitlines()) if m])
    assert messages[:2] == ["template message 1234567890123456789 to <openid>: failed",
                            "居民 <openid> 留了电话 <mobile> 和 <mobile>，工单 20260509-0001"]
    assert "ValueError: bad row for <openid> (tel <mobile>)" in err


def test_mask_leaves_ids_and_numbers_that_are_not_personal_alone():
    kept = ["MsgId 23456789012345678", "ticket 20260509-0001", "ts 1715240125", "ms 1715240125123",
            "openid-like but 29 chars o" + "a" * 28, "12345678901", "digest h:" + "0" * 64]
    assert [mask(text) for text in kept] == kept
    assert mask("https://api.weixin.qq.com/cgi-bin/message?access_token=ACCESS.tok-en&x=1") == \
        "https://api.weixin.qq.com/cgi-bin/message?access_token=***&x=1"
    assert mask(f"{OPENID},{OPENID}") == "<openid>,<openid>"


def test_an_incoming_request_id_is_kept_only_when_short_and_safe():
    assert request_id_for("abc-123_x.y:z") == "abc-123_x.y:z"
    for bad in (None, "", "a b", "x" * 65, "id\r\nSet-Cookie: a=b", "中文", "-leading-dash"):
        made = request_id_for(bad)
        assert re.fullmatch(r"[0-9a-f]{16}", made), (bad, made)
    assert request_id_for(None) != request_id_for(None)


async def test_the_request_id_is_echoed_and_in_the_log_of_that_request(tmp_path, capsys, restore_logging):
    setup_logging(LogSettings())
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'minyi.db'}")
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        resp = await client.get("/healthz", headers={"X-Request-Id": "lb-check-1"})
        assert resp.status == 200 and resp.headers["X-Request-Id"] == "lb-check-1"
        resp = await client.get("/healthz", headers={"X-Request-Id": "no spaces allowed"})
        assert re.fullmatch(r"[0-9a-f]{16}", resp.headers["X-Request-Id"])
        resp = await client.get("/wechat")  # refused (no signature): still carries an id
        assert resp.status == 400 and re.fullmatch(r"[0-9a-f]{16}", resp.headers["X-Request-Id"])

        capsys.readouterr()
        # A failed template delivery report: bot/dialogs/events.py logs a warning while
        # handling it (in a task the callback spawns, which inherits the request id).
        sender = wechat.Sender(client)
        fields = wechat.event(OPENID, "TEMPLATESENDJOBFINISH", MsgID="200163836", Status="failed:user block")
        body, query = sender.encode(fields, sender.signed_query())
        resp = await client.post("/wechat", params=query, data=body, headers={"X-Request-Id": "wx-delivery-42"})
        assert resp.status == 200 and await resp.text() == "success"
        assert resp.headers["X-Request-Id"] == "wx-delivery-42"
    finally:
        await client.close()
    err = capsys.readouterr().err
    lines = [TEXT_LINE.match(line) for line in err.splitlines()]
    during = [m for m in lines if m and m["logger"] == "bot.dialogs.events"]
    assert [m["req"] for m in during] == ["wx-delivery-42"]
    assert "200163836" in during[0]["message"]
    assert OPENID not in err


def test_spawned_serve_workers_log_json_lines_with_time_and_level(data_dir):
    port = free_port()
    env = {**child_env(data_dir), "MINYI_LOG_FORMAT": "json"}
    proc = subprocess.Popen([MINYI, "serve", "--port", str(port), "--workers", "2"], env=env, cwd=data_dir.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(proc, port, 25)
        time.sleep(0.5)  # the second worker may still be starting
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    records = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert len(records) == len(err.splitlines()), err  # nothing unformatted (no bare prints, no tracebacks)
    started = {r["worker"]: r for r in records if r["message"].startswith("worker ")}
    assert sorted(started) == ["1", "2"], err
    assert started["1"]["pid"] != started["2"]["pid"] != proc.pid
    for worker, record in started.items():
        assert record["level"] == "INFO" and _near_now(record["time"]) and record["logger"] == "minyi"
        assert record["message"].startswith(f"worker {worker} started (pid {record['pid']}, uvloop); open-file limit ")
    assert all(r["worker"] in {"main", "1", "2"} for r in records)


async def test_database_errors_do_not_carry_the_bound_values(client):
    """A failed statement's message names the SQL, never the values bound to it
    (openids, complaint text): they would reach logs and error reports."""
    import sqlalchemy.exc
    from sqlalchemy import text

    from tests.conftest import services_of

    services = services_of(client)
    secret = "o-secret-openid-13800138000"
    with pytest.raises(sqlalchemy.exc.SQLAlchemyError) as caught:
        async with services.db.transaction() as s:
            await s.exec(text("INSERT INTO no_such_table (openid) VALUES (:openid)"), params={"openid": secret})
    message = str(caught.value)
    assert "no_such_table" in message and secret not in message
    assert "hidden due to hide_parameters" in message
