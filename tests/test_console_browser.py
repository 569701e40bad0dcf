"""The console in a real browser: Playwright for Python driving Debian's chromium (never
a downloaded browser build; `./dev test` installs the package). Screenshots are kept in
tests/artifacts/console/ (MINYI_TEST_ARTIFACTS to put them elsewhere).

A grid worker on a phone (390×844) logs in, sees only their grid, accepts and resolves a
ticket with a note and a photo; the resident, chatting in /sim, receives the 回访 prompt
and rates. A dispatcher on a desktop re-routes a triage ticket with the pickers."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.steps import DEMO_PASSWORD, follow, ratings_of, report, ticket_by_number, tickets_of

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
ARTIFACTS = Path(os.environ.get("MINYI_TEST_ARTIFACTS", Path(__file__).parent / "artifacts")) / "console"
PNG = Path(__file__).parent / "data" / "photo.png"


def chromium_path() -> str:
    found = os.environ.get("MINYI_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    assert found, "Debian's chromium is needed for the browser tests (./dev test installs it: apt-get install chromium)"
    return found


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        yield launched
        await launched.close()


async def shot(page: Page, name: str, backend: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}-{backend}.png"), full_page=True)


async def log_in(page: Page, base: str, login: str) -> None:
    await page.goto(f"{base}/console/")
    await page.get_by_label("工号").fill(login)
    await page.get_by_label("密码").fill(DEMO_PASSWORD)
    await page.get_by_role("button", name="登录").click()
    await expect(page.locator("header .who")).to_contain_text(login)


async def test_a_grid_worker_on_a_phone_resolves_and_the_resident_rates_in_the_simulator(
        client: Any, sender: Any, browser: Browser, new_openid: Any, database_url: str) -> None:
    backend = database_url.split("+")[0].split(":")[0]
    base = str(client.make_url("")).rstrip("/")
    other = await report(sender, await follow(sender, new_openid()), "幸福里小区门口垃圾桶满了好几天没人清运")

    # The resident reports from the simulator, as on their phone.
    resident = await browser.new_page(viewport=PHONE)
    await resident.goto(f"{base}/sim")
    await resident.get_by_role("button", name="关注", exact=True).click()
    text_box = resident.locator("#text")

    async def say(words: str) -> None:
        await text_box.fill(words)
        await resident.locator("#sendBtn").click()

    await expect(resident.locator("#chat")).to_contain_text("同意")
    await say("同意")
    await say("枫林小区垃圾桶满了好几天没人清运，臭气熏天")
    # Not just "编号": the consent reply already mentions 工单编号; wait for the receipt.
    await expect(resident.locator("#chat")).to_contain_text("您的诉求已受理")
    openid = await resident.locator("#openid").input_value()
    [ticket] = await tickets_of(client, openid)
    number = ticket.number
    assert (ticket.area_code, ticket.status) == ("420199001001001", "dispatched")

    # The grid worker, on a phone.
    worker = await browser.new_page(viewport=PHONE)
    await log_in(worker, base, "G01")
    await worker.get_by_role("link", name="本网格").click()
    await expect(worker.locator(f'li[data-number="{number}"]')).to_be_visible()
    await expect(worker.locator(f'li[data-number="{other}"]')).to_have_count(0)
    assert await worker.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]  # nothing sideways
    await shot(worker, "grid-queue-phone", backend)
    await worker.locator(f'li[data-number="{number}"] a').click()
    await expect(worker.locator("h1")).to_contain_text(number)
    await worker.locator('form[data-action="accept"] button').click()
    await expect(worker.locator("#status")).to_have_text("已接单")
    resolve = worker.locator('form[data-action="resolve"]')
    await resolve.locator("textarea").fill("已清运，垃圾桶已清洗消毒")
    await resolve.locator('input[type="file"]').set_input_files(str(PNG))
    await shot(worker, "ticket-resolve-phone", backend)
    await resolve.locator("button").click()
    await expect(worker.locator("#status")).to_have_text("已办结")
    await expect(worker.locator("figure img")).to_have_count(1)
    await expect(worker.locator("#timeline")).to_contain_text("已清运，垃圾桶已清洗消毒")
    await shot(worker, "ticket-resolved-phone", backend)
    resolved = await ticket_by_number(client, number)
    assert resolved.status == "resolved"

    # Back in the simulator, the 回访 prompt arrives (the outbox is polled every 2 s); the
    # resident rates.
    await expect(resident.locator("#chat")).to_contain_text("请您评价", timeout=15_000)
    await say("1")
    await expect(resident.locator("#chat")).to_contain_text("解决了吗", timeout=10_000)
    await say("1")
    await say("0")
    await shot(resident, "sim-rated-phone", backend)
    [rating] = await ratings_of(client, number)
    assert (rating.satisfaction, rating.resolution, rating.channel) == ("满意", "已解决", "chat")
    assert (await ticket_by_number(client, number)).status == "rated"


async def test_a_dispatcher_reroutes_a_triage_ticket(client: Any, sender: Any, browser: Browser, new_openid: Any,
                                                     database_url: str) -> None:
    backend = database_url.split("+")[0].split(":")[0]
    base = str(client.make_url("")).rstrip("/")
    number = await report(sender, await follow(sender, new_openid()), "我想反映一下情况，这个事情很麻烦")
    assert (await ticket_by_number(client, number)).status == "triage"
    page = await browser.new_page(viewport=DESKTOP)
    await log_in(page, base, "D01")
    # The first of D01's queues that holds tickets opens: 待分拨, with the new one in it.
    await expect(page).to_have_url(f"{base}/console/q/triage")
    await page.locator(f'li[data-number="{number}"] a').click()
    form = page.locator('form[data-action="dispatch"]')
    await form.get_by_label("分类").select_option("garbage")
    await form.get_by_label("网格").select_option("420199001001001")
    await form.locator("textarea").fill("转城管处理")
    await shot(page, "reroute-desktop", backend)
    await form.locator("button").click()
    await expect(page.locator("#status")).to_have_text("已派单")
    await expect(page.locator("#timeline")).to_contain_text("改分类")
    await shot(page, "rerouted-desktop", backend)
    after = await ticket_by_number(client, number)
    assert (after.status, after.category, after.area_code) == ("dispatched", "garbage", "420199001001001")
