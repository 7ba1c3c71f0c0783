"""A folded check output in a real headless Chromium: shown as text, and an output the reader
opened stays open while the page follows changes live."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness.agents import AgentProcess, wait_for

# The agent (node "uinode") and the headless browser are test_ui_browser.py's fixtures.
from .test_ui_browser import agent, browser, dom  # noqa: F401

pytestmark = pytest.mark.timeout(180)


def test_folded_output_is_text_and_stays_open_across_live_updates(agent: AgentProcess,
                                                                   browser: Any) -> None:
    page = ("<!DOCTYPE html><html><body><h1 id=injected>Directory listing</h1>"
            + "<li>entry</li>" * 100 + "</body></html>")
    agent.http("PUT", "/v1/agent/service/register",
               {"Name": "web", "ID": "web1", "Port": 8080, "Check": {"TTL": "300s"}})
    agent.http("PUT", "/v1/agent/check/update/service:web1", {
        "Status": "passing", "Output": f"HTTP GET http://127.0.0.1:8080/: 200 OK Output: {page}"})
    browser.get(f"http://{agent.http_addr}/ui/services/web")
    sel = 'details[data-key="out:uinode/service:web1"]'
    wait_for(lambda: dom(browser, f"return !!document.querySelector('{sel}')"), 10,
             what="the folded output")
    # the body is text: nothing of it became an element
    assert dom(browser, "return document.getElementById('injected')") is None
    assert "<h1 id=injected>" in dom(browser, f"return document.querySelector('{sel} pre')"
                                              ".textContent")
    wait_for(lambda: dom(browser, "return document.getElementById('live')"
                                  ".getAttribute('data-state')") == "live",
             15, what="the page to go live")
    dom(browser, f"document.querySelector('{sel} summary').click()")
    assert dom(browser, f"return document.querySelector('{sel}').open") is True
    # a change to the same instance repaints its card; the opened output stays open
    agent.http("PUT", "/v1/agent/check/update/service:web1", {
        "Status": "warning", "Output": f"HTTP GET http://127.0.0.1:8080/: 429 Output: {page}"})
    wait_for(lambda: "429" in dom(browser, f"return document.querySelector('{sel} summary')"
                                           ".textContent"), 15, what="the live update")
    assert dom(browser, f"return document.querySelector('{sel}').open") is True
