"""Slow and many clients, through a real server on a real port and raw sockets: a body that
drips past the read deadline gets 408 and its connection closes; bodies still arriving
are capped (503 at once) while complete bodies and /healthz still get through; a request
head that never finishes is closed by the keep-alive timer; the open-file limit of a
worker is raised to the hard limit; asyncio's accept errors are rate-limited.

These tests are about the HTTP layer, not the database: they run on SQLite only."""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import resource
import subprocess
import sys
import textwrap
import time
import urllib.parse
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from bot.app import create_app
from bot.httpbody import BUSY_TEXT, LINGERING_SECONDS, TIMEOUT_TEXT, BodyGate, handler_options
from bot.logs import RateLimitFilter, setup_logging
from bot.settings import LogSettings, Settings
from tests import wechat
from tests.conftest import make_settings
from tests.test_cli import MINYI, child_env, free_port, wait_healthy

OPENID = "o" + "SlowClient" * 2 + "abcdefg"  # 28 characters


def slow_settings(tmp_path: Path, **server: Any) -> Settings:
    return make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'data' / 'minyi.db'}", server=server)


async def start(settings: Settings) -> TestServer:
    server = TestServer(create_app(settings), host="127.0.0.1")
    await server.start_server(**handler_options(settings.server))  # what `minyi serve` passes to run_app
    return server


def gate_of(app: web.Application) -> BodyGate:
    for middleware in app.middlewares:
        gate = getattr(middleware, "gate", None)
        if isinstance(gate, BodyGate):
            return gate
    raise AssertionError("body_limits middleware not installed")


def signed_path() -> str:
    return "/wechat?" + urllib.parse.urlencode(wechat.Sender(client=None).signed_query())


def text_body(content: str = "你好") -> bytes:
    return wechat.xml_of(wechat.text(OPENID, content)).encode()


def head(path: str, length: int, method: str = "POST") -> bytes:
    return (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


async def read_response(reader: asyncio.StreamReader, timeout: float) -> tuple[int, dict[str, str], bytes]:
    raw = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
    body = await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), timeout)
    return status, headers, body


async def closed_within(reader: asyncio.StreamReader, timeout: float) -> bool:
    """True when the server closes the connection (EOF or reset) within `timeout`."""
    try:
        async with asyncio.timeout(timeout):
            while await reader.read(4096):
                pass
        return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def drip(writer: asyncio.StreamWriter, data: bytes, every: float) -> None:
    """Send one byte every `every` seconds until done or the server hangs up."""
    try:
        for i in range(len(data)):
            writer.write(data[i:i + 1])
            await writer.drain()
            await asyncio.sleep(every)
    except (ConnectionError, OSError):
        pass


@pytest.fixture
async def connections() -> AsyncIterator[list[asyncio.StreamWriter]]:
    opened: list[asyncio.StreamWriter] = []
    yield opened
    for writer in opened:
        writer.close()


async def test_a_body_dripping_past_the_deadline_gets_408_and_its_connection_closes(tmp_path, connections):
    server = await start(slow_settings(tmp_path, body_read_timeout_seconds=1.0))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        connections.append(writer)
        body = text_body()
        writer.write(head(signed_path(), len(body)))
        await writer.drain()
        started = time.monotonic()
        # A byte every 0.2 s keeps the connection busy (no idle timeout would fire) but the
        # body would take ~20 s: the total deadline of 1 s ends it.
        dripping = asyncio.create_task(drip(writer, body, 0.2))
        status, headers, text = await read_response(reader, timeout=5)
        answered = time.monotonic() - started
        assert status == 408 and text.decode() == TIMEOUT_TEXT
        assert headers["connection"] == "close"
        assert 0.95 <= answered < 1.6
        assert await closed_within(reader, LINGERING_SECONDS + 1.0)
        assert time.monotonic() - started < 1.0 + LINGERING_SECONDS + 1.0
        dripping.cancel()
    finally:
        await server.close()


async def test_stalled_bodies_above_the_cap_get_503_while_healthz_and_complete_bodies_get_through(
        tmp_path, connections):
    server = await start(slow_settings(tmp_path, body_read_timeout_seconds=8.0, max_inflight_bodies=5))
    try:
        gate = gate_of(server.app)
        body = text_body("幸福里小区3号楼的电梯坏了三天了")
        stalled = []
        for _ in range(5):  # every slot taken by a body that stops after its first byte
            reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
            connections.append(writer)
            writer.write(head(signed_path(), len(body)) + body[:1])
            await writer.drain()
            stalled.append(reader)
        deadline = time.monotonic() + 3
        while gate.inflight < 5:
            assert time.monotonic() < deadline, f"only {gate.inflight} bodies in flight"
            await asyncio.sleep(0.02)

        # One more stalled body: refused at once, before anything is acknowledged.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        connections.append(writer)
        writer.write(head(signed_path(), len(body)) + body[:1])
        await writer.drain()
        asked = time.monotonic()
        status, headers, text = await read_response(reader, timeout=3)
        assert (status, text.decode()) == (503, BUSY_TEXT)
        assert time.monotonic() - asked < 0.5
        assert gate.inflight == 5

        # /healthz answers, and a callback whose body has arrived whole is handled.
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        connections.append(writer)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        await writer.drain()
        status, _, text = await read_response(reader, timeout=3)
        assert status == 200 and b'"ok"' in text

        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        connections.append(writer)
        writer.write(head(signed_path(), len(body)) + body)
        await writer.drain()
        status, headers, text = await read_response(reader, timeout=5)
        assert status == 200 and headers["content-type"].startswith("application/xml")
        assert "<Content>" in text.decode()

        # The stalled ones still hold their slots, unanswered.
        assert gate.inflight == 5
        assert not any(reader.at_eof() for reader in stalled)
    finally:
        for writer in connections:
            writer.close()
        await server.close()


async def test_a_request_head_that_never_finishes_is_closed_by_the_keepalive_timer(tmp_path, connections):
    server = await start(slow_settings(tmp_path, keepalive_timeout_seconds=1.0))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        connections.append(writer)
        started = time.monotonic()
        dripping = asyncio.create_task(drip(writer, b"POST /wechat HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " +
                                            b"a" * 200, 0.1))
        assert await closed_within(reader, 3.0)
        assert 0.9 <= time.monotonic() - started < 2.0
        assert not dripping.done()  # it was still sending its head when the server hung up
        dripping.cancel()
    finally:
        await server.close()


# ---------------------------------------------------------------- open files

LOWER_AND_RAISE = textwrap.dedent("""
    import resource
    from bot.httpbody import raise_open_file_limit
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, hard))
    print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], raise_open_file_limit(), hard,
          resource.getrlimit(resource.RLIMIT_NOFILE)[0])
""")


def test_raise_open_file_limit_sets_the_soft_limit_to_the_hard_one():
    done = subprocess.run([sys.executable, "-c", LOWER_AND_RAISE], capture_output=True, text=True, timeout=20,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    before, returned_soft, returned_hard, hard, after = re.sub(r"[(),]", " ", done.stdout).split()
    hard_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    assert before == "256"
    assert (int(returned_soft), int(returned_hard), int(hard), int(after)) == (hard_limit,) * 4


def _low_soft_limit() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


def test_a_serve_worker_runs_at_the_hard_open_file_limit(data_dir):
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    port = free_port()
    proc = subprocess.Popen([MINYI, "serve", "--port", str(port)], env=child_env(data_dir), cwd=data_dir.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_low_soft_limit)
    try:
        wait_healthy(proc, port, 20)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        proc.terminate()
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    assert row.split()[3:5] == [str(hard), str(hard)]
    # uvloop is a dependency on Linux: the worker names the event loop it runs on.
    assert f"worker 1 started (pid {proc.pid}, uvloop); open-file limit {hard} (hard {hard})" in err


# ---------------------------------------------------------------- accept errors

def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("asyncio", logging.ERROR, __file__, 1, message, None, None)


def test_the_rate_limit_filter_lets_one_record_a_second_through_and_counts_the_rest():
    now = [0.0]
    limiter = RateLimitFilter(["socket.accept() out of system resource"], interval=1.0, clock=lambda: now[0])
    passed = []
    for i in range(1000):  # 1,000 accept errors in 1.5 s
        now[0] = i * 0.0015
        record = _record("socket.accept() out of system resource\nsocket: <socket fd=6>")
        if limiter.filter(record):
            passed.append(record.getMessage())
    assert len(passed) == 2
    assert passed[0] == "socket.accept() out of system resource\nsocket: <socket fd=6>"
    assert passed[1].endswith("\n[666 similar records suppressed]")  # t = 0.0015 … 0.999
    assert limiter.suppressed == 332  # t = 1.002 … 1.4985, reported with the next one
    other = _record("Unhandled exception in event loop")
    assert all(limiter.filter(other) for _ in range(5)) and limiter.suppressed == 332




async def test_asyncio_accept_errors_are_logged_at_most_once_a_second(capsys, restore_logging):
    setup_logging(LogSettings(), worker=7)  # what every worker does first
    loop = asyncio.get_running_loop()
    context = {"message": "socket.accept() out of system resource",
               "exception": OSError(errno.EMFILE, "Too many open files")}
    capsys.readouterr()
    for _ in range(1000):
        loop.call_exception_handler(context)
    first = capsys.readouterr().err
    assert first.count("socket.accept() out of system resource") == 1
    assert "ERROR worker=7" in first and "OSError: [Errno 24] Too many open files" in first
    await asyncio.sleep(1.05)
    loop.call_exception_handler(context)
    loop.call_exception_handler({"message": "something else went wrong"})
    second = capsys.readouterr().err
    assert second.count("socket.accept() out of system resource") == 1
    assert "[999 similar records suppressed]" in second
    assert "something else went wrong" in second
