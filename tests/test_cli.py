"""The `minyi` command: in-process through bot.cli.main, and as the installed console
script where a real process matters (stdin/stdout streaming, serving, signals)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer
from alembic.script import ScriptDirectory
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)
from bot.app import create_app
from bot.settings import CONFIG_DIR
from storage import migrate
from tests import wechat
from tests.conftest import make_settings, run_main

MINYI = str(Path(sys.executable).parent / "minyi")
CJK = re.compile(r"[\u4e00-\u9fff]")
NUMBER = re.compile(r"\d{8}-\d{4}")


def child_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINYI_")}
    env["MINYI_DATA_DIR"] = str(data_dir)
    return env


def demo_counts() -> tuple[int, int]:
    def count(name: str, key: str) -> int:
        with open(CONFIG_DIR / "demo" / name, "rb") as fh:
            return len(tomllib.load(fh)[key])
    return count("areas.toml", "area"), count("staff.toml", "staff")


def test_minyi_help_is_chinese(data_dir):
    done = subprocess.run([MINYI, "--help"], env=child_env(data_dir), capture_output=True, text=True, timeout=20)
    assert done.returncode == 0, done.stderr
    assert "网格化社会治理" in done.stdout
    for command in ("serve", "migrate", "demo", "wechat", "outbox", "route", "config"):
        assert re.search(rf"^\s+{command}\s+\S*{CJK.pattern}", done.stdout, re.M), command


def test_a_reader_that_stops_early_ends_the_listing_quietly(data_dir):
    """`minyi staff list | head -2`: the rest is dropped without a traceback; the exit
    status is a shell's for a command the pipe closed on."""
    proc = subprocess.Popen([MINYI, "staff", "list"], env=child_env(data_dir), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # as head does after its lines; here before the first (Python is still starting)
    err = proc.stderr.read()
    assert proc.wait(timeout=30) == 141, err
    assert "Traceback" not in err and "BrokenPipeError" not in err, err


@pytest.mark.parametrize("argv", [
    ["serve"], ["migrate"], ["demo"], ["demo", "load"], ["wechat"], ["wechat", "menu"],
    ["wechat", "menu", "push"], ["outbox"], ["outbox", "list"], ["route"], ["config"], ["config", "show"],
], ids=" ".join)
def test_every_subcommand_has_chinese_help(data_dir, capsys, argv):
    code, out = run_main(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith(f"usage: minyi {' '.join(argv)}")
    described = [line for line in out.splitlines() if not line.startswith("usage:") and CJK.search(line)]
    assert described, f"`minyi {' '.join(argv)} --help` explains nothing in Chinese:\n{out}"


def test_migrate_creates_the_schema_on_a_fresh_data_dir(data_dir, capsys):
    assert not data_dir.exists()
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    code, out = run_main(capsys, "migrate")
    assert code == 0
    assert f"数据库已迁移到版本 {head}" in out
    with sqlite3.connect(data_dir / "minyi.db") as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = conn.execute("SELECT version_num FROM alembic_version").fetchall()
    assert set(SQLModel.metadata.tables) <= tables
    assert version == [(head,)]
    code, out = run_main(capsys, "migrate")  # again: nothing to do, same revision
    assert code == 0 and f"版本 {head}" in out


def test_demo_load_twice_adds_nothing_the_second_time(data_dir, capsys):
    areas, staff = demo_counts()
    assert run_main(capsys, "migrate")[0] == 0
    code, out = run_main(capsys, "demo", "load")
    assert code == 0 and f"网格节点 {areas} 个，工作人员 {staff} 名" in out
    code, out = run_main(capsys, "demo", "load")
    assert code == 0 and "网格节点 0 个，工作人员 0 名" in out
    with sqlite3.connect(data_dir / "minyi.db") as conn:
        assert conn.execute("SELECT count(*) FROM area").fetchone() == (areas,)
        assert conn.execute("SELECT count(*) FROM staff").fetchone() == (staff,)


def test_route_streams_one_json_object_per_line(data_dir):
    lines = ["枫林小区楼下烧烤油烟太大", "", "着火了", "有个事情想问问"]
    done = subprocess.run([MINYI, "route"], input="\n".join(lines) + "\n", env=child_env(data_dir),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    results = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(results) == 3  # the blank line is skipped
    with open(CONFIG_DIR / "taxonomy.toml", "rb") as fh:
        taxonomy = tomllib.load(fh)
    names = {c["code"]: c["name"] for c in taxonomy["category"]}
    departments = {d["code"] for d in taxonomy["department"]}
    for result in results:
        assert {"category", "label", "department", "urgency", "grid", "keywords", "confidence"} <= result.keys()
        assert result["category"] in names and result["department"] in departments
        assert result["urgency"] in ("特急", "紧急", "一般")
        assert isinstance(result["keywords"], list) and 0 <= result["confidence"] <= 1
    fumes, fire, vague = results
    assert fumes["grid"] == "420199001001001"  # 枫林小区 lies in 枫林第一网格
    assert fumes["category"] == "cooking_fumes" and {"烧烤", "油烟"} <= set(fumes["keywords"])
    assert "油烟" in fumes["tags"] and all(len(tag) >= 2 for r in results for tag in r["tags"])  # TF-IDF keywords
    assert fire["urgency"] == "特急"
    assert fire["grid"] is None and vague["grid"] is None  # no place named, no guess
    for result in results:  # with no trained model in the data dir the label is the category
        assert result["label"] == result["category"], result


def test_config_show_masks_secrets(data_dir, capsys, monkeypatch):
    monkeypatch.setenv("MINYI_WECHAT_SECRET", "very-secret-app-secret")
    monkeypatch.setenv("MINYI_WECHAT_AES_KEY", "k" * 43)
    monkeypatch.setenv("MINYI_DATABASE_URL", "postgresql+asyncpg://minyi:db-password@db.example/minyi")
    monkeypatch.setenv("MINYI_SERVER_PORT", "9123")
    monkeypatch.setenv("MINYI_WECHAT_TOKEN", "callback-token-1234")
    monkeypatch.setenv("MINYI_SERVER_LINK_SECRET", "link-signing-secret")
    code, out = run_main(capsys, "config", "show")
    assert code == 0
    for secret in ("very-secret-app-secret", "k" * 43, "db-password", "callback-token-1234", "link-signing-secret"):
        assert secret not in out
    lines = set(out.splitlines())
    assert {"secret = '***'", "aes_key = '***'", "token = '***'", "link_secret = '***'"} <= lines
    assert "db.example/minyi" in out
    assert "[wechat]" in out and "port = 9123" in out


async def test_outbox_list_shows_what_a_conversation_queued(data_dir, capsys):
    settings = make_settings(data_dir.parent, f"sqlite+aiosqlite:///{data_dir / 'minyi.db'}")
    client = TestClient(TestServer(create_app(settings)))
    await client.start_server()
    try:
        sender = wechat.Sender(client)
        openid = "o" + "cli" * 9
        await sender.reply(wechat.event(openid, "subscribe"))
        await sender.reply(wechat.text(openid, "同意"))
        number = NUMBER.search(await sender.reply(wechat.text(openid, "幸福里小区3号楼的电梯坏了三天了，老人下不了楼")))
        assert number
    finally:
        await client.close()

    # main() runs its own event loop: give it a thread of its own.
    code, out = await asyncio.to_thread(run_main, capsys, "outbox", "list")
    assert code == 0
    rows = re.findall(r"^#(\d+) .+ \[(\w+)\] (\w+) → (\S+): (.*)$", out, re.M)
    assert rows, out
    assert any(number.group(0) in text for *_, text in rows), out
    ids = [int(row[0]) for row in rows]
    assert ids == sorted(ids)  # oldest first
    code, out = await asyncio.to_thread(run_main, capsys, "outbox", "list", "--limit", "1")
    assert code == 0 and re.findall(r"^#(\d+) ", out, re.M) == [str(max(ids))]
    code, out = await asyncio.to_thread(run_main, capsys, "outbox", "list", "--status", "sent")
    assert code == 0 and "outbox 为空" in out  # offline mode sends nothing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return None


def wait_healthy(proc: subprocess.Popen, port: int, seconds: float = 20) -> None:
    """Until `minyi serve` answers /healthz with 200; fails if it exits or takes too long."""
    deadline = time.monotonic() + seconds
    while http_status(f"http://127.0.0.1:{port}/healthz") != 200:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"minyi serve did not become healthy in {seconds:.0f} s"
        time.sleep(0.1)


def test_serve_starts_on_nothing_but_a_data_dir_and_stops_cleanly(data_dir):
    port = free_port()
    proc = subprocess.Popen([MINYI, "serve", "--port", str(port)], env=child_env(data_dir), cwd=data_dir.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_healthy(proc, port, 20)
        assert http_status(f"http://127.0.0.1:{port}/sim") == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"http://127.0.0.1:{port}" in out and "/sim" in out
    assert "Traceback" not in err
    assert (data_dir / "minyi.db").exists()
