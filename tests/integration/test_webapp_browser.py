"""In a real browser (Debian chromium, driven by Playwright): open an invite link, record a
contact with an outcome and a verdict, find the rows in the database, keep a screenshot."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from configs import load_config
from tests.workspace_data import NEXT_WEEK, WEEK, tiny_ranking
from webapp import auth
from webapp.app import create_app
from webapp.db import publish_week, recorded_contacts, records
from webapp.settings import AppSettings

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SECRET = b"browser-test-secret-" * 2
COURSE = "PY101-2026A"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(tmp_path):
    """The app on a free port (uvicorn in a thread) with two published weeks."""
    import uvicorn

    app = create_app(AppSettings(home=tmp_path, config=load_config(), secret=SECRET))
    engine = app.state.engine
    publish_week(engine, as_of=WEEK, ranking=tiny_ranking({"cur-a": ["s1", "s2"]}))
    entry = records.find_entry(engine, "s2", COURSE)
    records.record_contact(
        engine,
        entry,
        recorded_by="cur-a",
        channel="email",
        outcome="no_answer",
        ts=WEEK + timedelta(days=1),
    )
    names = pd.DataFrame(
        {"student_id": ["s1", "s2", "s3"], "display_name": ["Anna Petrova", "Boris", "Chen Li"]}
    )
    week = publish_week(
        engine,
        as_of=NEXT_WEEK,
        ranking=tiny_ranking({"cur-a": ["s1", "s2", "s3"], "cur-b": ["s4"]}),
        display_names=names,
        course_titles={COURSE: "Python for beginners"},
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", engine, week
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")
def test_curator_records_contact_and_verdict_in_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    base, engine, week = served
    link = auth.invite_link(
        engine, SECRET, "cur-a", lead=False, base_url=base, expires_in=timedelta(hours=1)
    )
    shot = Path(tmp_path) / "curator-page.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(link)
            page.get_by_role("button", name="Open my workspace").click()
            page.wait_for_url(f"{base}/week")
            assert page.locator("article.card").count() == 3
            assert "did not reply last time" in page.locator(".banner").inner_text()

            card = page.locator("article.card").first
            assert "Anna Petrova" in card.inner_text()
            message = card.locator("textarea[name=message]")
            assert message.input_value().startswith("Hi Anna!")
            message.fill("Hi Anna! Shall we plan the next assignment together?")
            card.locator("select[name=channel]").select_option("messenger")
            card.get_by_role("button", name="Replied").click()
            page.wait_for_load_state()

            card = page.locator("article.card").first
            card.locator("summary").click()
            card.get_by_role("button", name="Useful").click()
            page.wait_for_load_state()
            card = page.locator("article.card").first
            assert "Replied" in card.locator(".history").inner_text()
            assert "Useful" in card.inner_text()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()

    contacts = recorded_contacts(engine)
    mine = contacts[contacts["student_id"] == "s1"]
    assert mine[["curator_id", "action", "outcome"]].values.tolist() == [
        ["cur-a", "write_first", "replied"]
    ]
    cards = records.curator_cards(engine, week.week_id, "cur-a")
    first = cards[0]
    assert first.contacts[0]["channel"] == "messenger"
    assert first.contacts[0]["message"].startswith("Hi Anna! Shall we plan")
    assert first.verdict["verdict"] == "useful"
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is not installed")
def test_lead_page_in_browser(served, tmp_path):
    from playwright.sync_api import sync_playwright

    base, engine, week = served
    entry = records.find_entry(engine, "s1", COURSE)
    records.record_contact(engine, entry, recorded_by="cur-a", channel="phone", outcome="replied")
    records.record_verdict(engine, entry, "wrongly_flagged", recorded_by="cur-a", reason="ill")
    records.record_feedback(
        engine, entry, "Short weekly goals", question="What helps?", recorded_by="cur-a"
    )
    link = auth.invite_link(
        engine, SECRET, "lead-1", lead=True, base_url=base, expires_in=timedelta(hours=1)
    )
    shot = Path(tmp_path) / "lead-page.png"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.goto(link)
            page.get_by_role("button", name="Open my workspace").click()
            page.wait_for_url(f"{base}/lead")
            assert page.locator("#fig-listed").inner_text() == "4"
            assert page.locator("#fig-contacted").inner_text() == "1"
            assert "Short weekly goals" in page.inner_text("body")
            assert page.locator("#effect").count() == 1
            page.select_option("select[name=curator]", "cur-a")
            page.get_by_role("button", name="Show").click()
            page.wait_for_url("**curator=cur-a**")
            assert page.locator("#fig-listed").inner_text() == "3"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
