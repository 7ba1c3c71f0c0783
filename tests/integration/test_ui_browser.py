"""The web UI in a real headless Chromium, against a real agent process.

Needs Debian's ``chromium`` and ``chromium-driver`` (scripts/setup-system.sh installs them) and
the ``selenium`` Python package; the browser is never downloaded. Each test skips with the reason
when one of these is missing (a failure in CI, see tests/harness/ci_skips.py).
"""

from __future__ import annotations

import shutil
import tempfile
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.agents import AgentProcess, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

pytestmark = pytest.mark.timeout(180)


def _need_browser() -> Any:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (apt-get install chromium "
                    "chromium-driver; scripts/setup-system.sh does it)")
    try:
        from selenium import webdriver
    except ImportError:
        pytest.skip("the selenium package is not installed (pip install selenium)")
    return webdriver


def make_browser(*, javascript: bool = True, width: int = 1200, height: int = 900) -> Any:
    webdriver = _need_browser()
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rumor-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-extensions",
                f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        opts.add_argument(arg)
    if not javascript:
        opts.add_experimental_option("prefs", {
            "profile.managed_default_content_settings.javascript": 2})
    driver = webdriver.Chrome(options=opts, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    driver._rumor_profile = profile  # removed in close_browser
    return driver


def close_browser(driver: Any) -> None:
    try:
        driver.quit()
    finally:
        shutil.rmtree(driver._rumor_profile, ignore_errors=True)


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[AgentProcess]:
    _need_browser()
    a = AgentProcess("uinode", tmp_path).start()
    try:
        yield a
    finally:
        a.stop()


@pytest.fixture
def browser() -> Iterator[Any]:
    d = make_browser()
    try:
        yield d
    finally:
        close_browser(d)


def register(agent: AgentProcess, body: dict[str, Any]) -> None:
    agent.http("PUT", "/v1/agent/service/register", body)   # any error, 404 included, fails


def dom(driver: Any, script: str) -> Any:
    return driver.execute_script(script)


def card(driver: Any, key: str) -> dict[str, Any] | None:
    """The element with data-key=key: its health, maintenance flag and badge colour."""
    return dom(driver, """
        const el = [...document.querySelectorAll('[data-key]')]
            .find(e => e.getAttribute('data-key') === arguments[0]);
        if (!el) return null;
        const badge = el.querySelector('.badge');
        return {health: el.getAttribute('data-health'), text: el.textContent,
                border: getComputedStyle(el).borderLeftColor,
                badge: badge ? getComputedStyle(badge).color : null};
    """.replace("arguments[0]", repr(key)))


def rgb(css: str) -> tuple[int, ...]:
    inner = css[css.index("(") + 1:css.index(")")]
    return tuple(int(float(x)) for x in inner.split(",")[:3])


def is_red(css: str) -> bool:
    r, g, b = rgb(css)
    return r > 150 and g < 90 and b < 90


def is_green(css: str) -> bool:
    r, g, _ = rgb(css)
    return g > 100 and r < 100


def test_ui_updates_live_and_turns_red(agent: AgentProcess, browser: Any) -> None:
    base = f"http://{agent.http_addr}"
    browser.get(base + "/")
    assert browser.current_url == base + "/ui/"
    wait_for(lambda: dom(browser, "return document.getElementById('live')"
                                  ".getAttribute('data-state')") == "live",
             15, what="the page script to connect its blocking queries")
    dom(browser, "window.__notReloaded = 42;")

    register(agent, {"Name": "web", "ID": "web1", "Port": 8080, "Tags": ["v1", "<b>bold</b>"],
                     "Check": {"CheckID": "web1-ttl", "TTL": "60s", "Status": "passing"}})
    got = wait_for(lambda: card(browser, "svc:web"), 15, what="web to appear without a reload")
    assert dom(browser, "return window.__notReloaded") == 42
    assert got["health"] == "passing", got
    wait_for(lambda: (c := card(browser, "svc:web")) and is_green(c["border"]), 5,
             what="the passing service to be green")
    # tags are shown as text, never as markup
    assert "<b>bold</b>" in got["text"]
    assert dom(browser, "return document.querySelectorAll('main b').length") >= 1  # summary only
    assert not dom(browser, "return [...document.querySelectorAll('.chip b')]"
                            ".some(b => b.textContent === 'bold')")

    agent.http("PUT", "/v1/agent/check/fail/web1-ttl?note="
               + urllib.parse.quote("heartbeat missed <img src=x onerror=alert(1)>"))
    wait_for(lambda: (c := card(browser, "svc:web")) and c["health"] == "critical", 15,
             what="web to turn critical without a reload")
    c = card(browser, "svc:web")
    assert c is not None and is_red(c["border"]), c
    assert dom(browser, "return window.__notReloaded") == 42

    # the service page follows the same instance, shows the check output, escaped, in red
    browser.get(base + "/ui/services/web")
    inst = wait_for(lambda: card(browser, "inst:uinode/web1"), 10, what="the instance card")
    assert inst["health"] == "critical" and is_red(inst["badge"]), inst
    assert "heartbeat missed <img src=x onerror=alert(1)>" in inst["text"]
    assert dom(browser, "return document.querySelectorAll('main img').length") == 0
    wait_for(lambda: dom(browser, "return document.getElementById('live')"
                                  ".getAttribute('data-state')") == "live",
             15, what="the service page to connect")
    agent.http("PUT", "/v1/agent/check/update/web1-ttl", {"Status": "passing", "Output": "back"})
    wait_for(lambda: (c := card(browser, "inst:uinode/web1")) and c["health"] == "passing", 15,
             what="the instance to go back to passing live")

    # the health page lists the check; the nodes page lists this agent as alive
    browser.get(base + "/ui/checks")
    assert card(browser, "chk:uinode/web1-ttl") is not None
    browser.get(base + "/ui/nodes")
    node = card(browser, "node:uinode")
    assert node is not None and "alive" in node["text"]


def test_first_paint_without_javascript(agent: AgentProcess) -> None:
    register(agent, {"Name": "db", "ID": "db1", "Port": 5432, "Tags": ["primary"]})
    driver = make_browser(javascript=False)
    try:
        driver.get(f"http://{agent.http_addr}/ui/")
        assert card(driver, "svc:db") is not None  # execute_script works; page scripts do not
        assert "primary" in driver.find_element("css selector", "#services").text
        state = driver.find_element("id", "live").get_attribute("data-state")
        assert state == "static"  # rumor.js never ran
        driver.get(f"http://{agent.http_addr}/ui/services/db")
        assert "db1" in driver.find_element("id", "instances").text
    finally:
        close_browser(driver)


def test_readable_on_a_phone_without_sideways_scrolling(agent: AgentProcess) -> None:
    long = "x" * 120
    register(agent, {"Name": "api-" + "y" * 60, "ID": "api1", "Port": 80,
                     "Tags": [long, "a", "b"], "Meta": {"k": long},
                     "Check": {"CheckID": "api-ttl", "TTL": "60s", "Status": "warning",
                               "Notes": long}})
    driver = make_browser(width=360, height=740)
    try:
        base = f"http://{agent.http_addr}"
        for path in ("/ui/", f"/ui/services/api-{'y' * 60}", "/ui/nodes", "/ui/checks",
                     "/ui/lb", "/ui/nodes/uinode"):
            driver.get(base + path)
            sizes = dom(driver, "return [document.documentElement.scrollWidth, "
                                "document.documentElement.clientWidth]")
            assert sizes[0] <= sizes[1], (path, sizes)
        # the warning instance is amber
        driver.get(base + f"/ui/services/api-{'y' * 60}")
        # the page fills its cards from the API after the load: wait for this one
        c = wait_for(lambda: card(driver, "inst:uinode/api1"), 10, what="the instance card")
        assert c["health"] == "warning", c
        r, g, b = rgb(c["badge"])
        assert r > 100 and b < 60 and g > 50, c  # amber: red + some green, no blue
    finally:
        close_browser(driver)


def test_lb_page_counts_requests_per_backend_live(agent: AgentProcess, browser: Any,
                                                   tmp_path: Path) -> None:
    import subprocess
    import sys
    import urllib.request

    from tests.harness.agents import free_port

    backend_port, lb_port = free_port(), free_port()
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "index.html").write_text("backend\n")
    server = subprocess.Popen([sys.executable, "-m", "http.server", str(backend_port),
                               "--bind", "127.0.0.1", "--directory", str(tmp_path / "www")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        register(agent, {"Name": "site", "ID": "site1", "Port": backend_port,
                         "Address": "127.0.0.1",
                         "Check": {"HTTP": f"http://127.0.0.1:{backend_port}/",
                                   "Interval": "1s"}})
        agent.http("PUT", "/v1/lb/listener", {"Name": "site", "Bind": f"127.0.0.1:{lb_port}",
                                              "Mode": "http", "Service": "site"})

        def through_lb() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{lb_port}/", timeout=2) as r:
                return r.read() == b"backend\n"

        wait_for(through_lb, 15, what="the listener to reach the backend")
        browser.get(f"http://{agent.http_addr}/ui/lb")

        def requests_shown() -> int:
            return int(dom(browser, """
                const row = [...document.querySelectorAll('tr[data-key]')]
                    .find(r => r.textContent.includes('site1'));
                const cell = row && row.querySelector('td[data-label="Requests"]');
                return cell ? cell.textContent : '-1';"""))

        before = wait_for(lambda: requests_shown() >= 1 and requests_shown(), 10,
                          what="the backend row with its request counter")
        dom(browser, "window.__notReloaded = 7;")
        for _ in range(5):
            through_lb()
        wait_for(lambda: requests_shown() >= before + 5, 15,
                 what="the per-backend request counter to rise on the page")
        assert dom(browser, "return window.__notReloaded") == 7
    finally:
        server.terminate()
        server.wait(timeout=5)


def test_nodes_page_shows_a_failed_member_without_reload(tmp_path: Path, browser: Any) -> None:
    from tests.harness.agents import Cluster

    cluster = Cluster(tmp_path)
    try:
        a, b = cluster.start_loopback(2, prefix="uimesh", extra_args=["-profile", "local"])
        wait_for(lambda: a.members().get(b.name) == "alive", 20, what="the two agents to meet")
        browser.get(f"http://{a.http_addr}/ui/nodes")
        node = card(browser, f"node:{b.name}")
        assert node is not None and "alive" in node["text"]
        wait_for(lambda: dom(browser, "return document.getElementById('live')"
                                      ".getAttribute('data-state')") == "live", 15,
                 what="the nodes page to connect")
        dom(browser, "window.__notReloaded = 9;")
        b.kill()                                   # a crash: no leave message
        wait_for(lambda: (c := card(browser, f"node:{b.name}")) and "failed" in c["text"], 30,
                 what="the killed member to show as failed")
        c = card(browser, f"node:{b.name}")
        assert c is not None and is_red(c["border"]), c
        assert dom(browser, "return window.__notReloaded") == 9
    finally:
        cluster.close()


def test_with_acls_the_token_form_unlocks_the_ui_and_live_updates(tmp_path: Path,
                                                                   browser: Any) -> None:
    import json

    conf = tmp_path / "acl.json"
    conf.write_text(json.dumps({"acl": {"enabled": True, "default_policy": "deny",
                                        "tokens": {"ui-read-token": "read",
                                                   "ops-write-token": "write"}}}))
    a = AgentProcess("uiacl", tmp_path, extra_args=["-config-file", str(conf)])
    a.start(wait=False)   # the harness's readiness probe has no token
    try:
        wait_for(lambda: a.http("GET", "/v1/agent/self?token=ui-read-token", timeout=1), 20,
                 what="the ACL agent to answer")
        a.http("PUT", "/v1/agent/service/register?token=ops-write-token",
               {"Name": "secret", "ID": "s1", "Port": 1,
                "Check": {"CheckID": "s1-ttl", "TTL": "60s", "Status": "passing"}})
        base = f"http://{a.http_addr}"
        browser.get(base + "/ui/")
        assert "ACL token needed" in browser.title
        assert card(browser, "svc:secret") is None          # nothing of the catalog shown
        browser.find_element("id", "token").send_keys("ui-read-token")
        browser.find_element("css selector", "form button").click()
        wait_for(lambda: card(browser, "svc:secret"), 10, what="the services page after the form")
        wait_for(lambda: dom(browser, "return document.getElementById('live')"
                                      ".getAttribute('data-state')") == "live", 15,
                 what="the script's blocking queries to be accepted with the cookie's token")
        a.http("PUT", "/v1/agent/check/update/s1-ttl?token=ops-write-token",
               {"Status": "critical", "Output": "down"})
        wait_for(lambda: (c := card(browser, "svc:secret")) and c["health"] == "critical", 15,
                 what="the change to show live under ACLs")
    finally:
        a.stop()


def test_datacenter_selector_shows_another_datacenter_live(tmp_path: Path, browser: Any) -> None:
    """Two agent processes in two datacenters (WAN members of each other). In dc1's UI the
    selector lists dc2; choosing it shows dc2's services (the page says so), live across the
    WAN hop: a check failing in dc2 turns its card red without a reload; links stay in dc2."""
    from selenium.webdriver.support.ui import Select

    from tests.harness.agents import free_port

    wan1 = free_port()
    a = AgentProcess("uidc1", tmp_path, extra_args=[
        "-datacenter", "dc1", "-serf-wan-port", str(wan1), "-profile", "local"])
    b = AgentProcess("uidc2", tmp_path, extra_args=[
        "-datacenter", "dc2", "-serf-wan-port", str(free_port()), "-profile", "local",
        "-join-wan", f"127.0.0.1:{wan1}"])
    try:
        a.start()
        b.start()
        wait_for(lambda: "dc2" in a.http("GET", "/v1/catalog/datacenters"), 20,
                 what="dc1 to know dc2")
        register(b, {"Name": "pay", "ID": "pay1", "Port": 9090,
                     "Check": {"CheckID": "pay1-ttl", "TTL": "60s", "Status": "passing"}})
        base = f"http://{a.http_addr}"
        browser.get(base + "/ui/")
        assert dom(browser, "return document.getElementById('main').dataset.dc") == "dc1"
        assert card(browser, "svc:pay") is None
        select = Select(browser.find_element("id", "dc"))
        assert [o.get_attribute("value") for o in select.options] == ["dc1", "dc2"]
        select.select_by_value("dc2")            # rumor.js submits the form on change
        wait_for(lambda: dom(browser, "return document.getElementById('main').dataset.dc")
                 == "dc2", 10, what="the page of dc2")
        assert browser.current_url.endswith("/ui/?dc=dc2"), browser.current_url
        assert "Datacenter dc2, read through this agent" in dom(
            browser, "return document.querySelector('[data-key=remote-dc]').textContent")
        got = card(browser, "svc:pay")
        assert got is not None and got["health"] == "passing", got
        wait_for(lambda: dom(browser, "return document.getElementById('live')"
                                      ".getAttribute('data-state')") == "live",
                 15, what="the page's blocking queries across the hop")
        dom(browser, "window.__notReloaded = 11;")
        b.http("PUT", "/v1/agent/check/fail/pay1-ttl?note=down")
        wait_for(lambda: (c := card(browser, "svc:pay")) and c["health"] == "critical", 20,
                 what="dc2's service to turn critical without a reload")
        c = card(browser, "svc:pay")
        assert c is not None and is_red(c["border"]), c
        assert dom(browser, "return window.__notReloaded") == 11
        browser.find_element("css selector", "a[href='/ui/services/pay?dc=dc2']").click()
        inst = wait_for(lambda: card(browser, "inst:uidc2/pay1"), 10, what="dc2's instance")
        assert inst["health"] == "critical" and "down" in inst["text"], inst
    finally:
        b.stop()
        a.stop()
