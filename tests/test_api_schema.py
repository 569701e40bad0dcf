"""The JSON API against its own OpenAPI document, with schemathesis: a live server on
127.0.0.1 with demo staff and residents' tickets reported through /wechat, and the
schemathesis CLI (every phase: examples, coverage, fuzzing, stateful) with the
dispatcher's bearer token. No answer may be a 5xx, and every answer must conform to the
document: status code, media type, headers and body schema. Bad input must be refused
with a 4xx (negative_data_rejection), the token must be enforced (ignored_auth), and
unsupported methods must be a 405 with an Allow header.

Bounded to keep it under a minute: a fixed seed, few examples per operation
(MINYI_TEST_SCHEMATHESIS_SEED / MINYI_TEST_SCHEMATHESIS_EXAMPLES explore further).
positive_data_acceptance is left out: schema-valid requests are refused for reasons a
schema cannot state (a ticket in the wrong state for the action, a grid the category
does not fit, a photo that is not an image), and those refusals are 4xx by design."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from bot.access.tokens import create_api_token
from bot.app import create_app
from bot.httpbody import handler_options
from tests import wechat
from tests.conftest import services_of
from tests.steps import follow, report, staff_member

REPORTS = [
    "枫林小区垃圾桶满了好几天没人清运，臭气熏天",
    "幸福里小区3号楼电梯坏了，老人下不了楼，电话13812345678",
    "枫林小区楼下烧烤摊油烟太大，窗户都不敢开",
]
MAX_EXAMPLES = int(os.environ.get("MINYI_TEST_SCHEMATHESIS_EXAMPLES", "25"))
SEED = int(os.environ.get("MINYI_TEST_SCHEMATHESIS_SEED", "20260105"))
TIMEOUT_SECONDS = 300


def schemathesis_config(numbers: list[str], token: str) -> str:
    """Real ticket numbers most of the time where an operation names a ticket, so the
    requests reach the views behind the 404."""
    values = ", ".join(f'"{n}"' for n in numbers)
    return f"""
headers = {{ Authorization = "Bearer {token}" }}
request-timeout = 20

[generation]
database = "none"

[dictionaries.tickets]
values = [{values}]

[parameters]
"path.number" = {{ dictionary = "tickets", probability = 0.8 }}
"body.into" = {{ dictionary = "tickets", probability = 0.8 }}
"body.numbers[*]" = {{ dictionary = "tickets", probability = 0.8 }}
"""


async def test_every_answer_conforms_to_the_openapi_document(aiohttp_server, aiohttp_client, settings, new_openid,
                                                             tmp_path: Path) -> None:
    server = await aiohttp_server(create_app(settings), host="127.0.0.1", **handler_options(settings.server))
    client = await aiohttp_client(server)
    sender = wechat.Sender(client)
    numbers = [await report(sender, await follow(sender, new_openid()), text) for text in REPORTS]
    dispatcher = await staff_member(client, "D01")
    async with services_of(client).db.transaction() as session:
        _, token = await create_api_token(session, dispatcher.id or 0, "schemathesis")

    config = tmp_path / "schemathesis.toml"
    config.write_text(schemathesis_config(numbers, token), encoding="utf-8")
    url = f"http://127.0.0.1:{server.port}/api/v1/openapi.json"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run", url,
        "--checks", "all", "--exclude-checks", "positive_data_acceptance",
        "--max-examples", str(MAX_EXAMPLES), "--seed", str(SEED), "--workers", "1",
        "--report", "junit", "--report-dir", str(tmp_path / "report"),
        cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(process.communicate(), TIMEOUT_SECONDS)
    except TimeoutError:
        process.kill()
        raise
    text = out.decode("utf-8", "replace")
    assert process.returncode == 0, text[-20000:]
