"""The dashboard in a real browser (headless Chromium driven by selenium): cells, registration, partition, heal.

Most tests run against a simulated cluster hosted by the dashboard itself; one runs against
a three-node Docker cluster. Without Chromium, its driver or selenium they skip with the
reason; under ``CI=true`` they fail instead (``make browser`` installs Chromium there).
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import pytest

from harness.dashboard.hub import Hub
from harness.dashboard.server import make_server
from harness.dashboard.sources import ClusterSource, SimSource

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
NODES = 6
WAIT = 20  # seconds any page change may take to show


def _no_browser(reason: str):
    if IN_CI:
        pytest.fail(f"CI=true but the browser tests cannot run: {reason} (make browser installs it)")
    pytest.skip(f"browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def browser():
    """A headless Chromium from the system packages, driven through its chromedriver."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _no_browser("selenium is not installed (pip install -r requirements-dev.txt)")
    binary = next(filter(None, map(shutil.which, ("chromium", "chromium-browser", "google-chrome"))), None)
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        _no_browser("no chromium or chromedriver on PATH (apt-get install chromium chromium-driver)")
    options = Options()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1400,980"):
        options.add_argument(arg)
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except Exception as exc:  # noqa: BLE001 - any failure to start means "no usable browser"
        _no_browser(f"chromium did not start ({type(exc).__name__}: {str(exc).splitlines()[0]})")
    yield driver
    driver.quit()


def serve(hub: Hub):
    """Start ``hub`` and serve it on a free port; return (url, stop)."""
    hub.start()
    server = make_server(hub, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        hub.stop()

    return f"http://127.0.0.1:{server.server_port}/", stop


@pytest.fixture
def page(browser):
    """A fresh simulated cluster of NODES nodes and its dashboard open in the browser."""
    url, stop = serve(Hub(SimSource(NODES, interval=0.2)))
    browser.get(url)
    try:
        yield browser
    finally:
        stop()


def until(driver, predicate, what: str, timeout: float = WAIT):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d))
    except Exception as exc:
        raise AssertionError(f"the page never showed {what}; last seen: {summary(driver)}") from exc


def cells(driver) -> dict[str, dict]:
    """node -> what its cell shows (state, digest group, whether it holds the watched address)."""
    return driver.execute_script("""
        const out = {};
        for (const c of document.querySelectorAll('.cell')) out[c.dataset.node] =
            {state: c.dataset.state, group: c.dataset.group, holds: c.classList.contains('holds')};
        return out;""")


def groups_drawn(driver) -> list[list[str]]:
    return driver.execute_script("""
        return [...document.querySelectorAll('.pgroup')]
            .map(g => [...g.querySelectorAll('.cell')].map(c => c.dataset.node));""")


def summary(driver) -> str:
    return f"cells {cells(driver)}, partition groups {groups_drawn(driver)}"


def click(driver, selector: str):
    from selenium.webdriver.common.by import By

    driver.find_element(By.CSS_SELECTOR, selector).click()


def type_into(driver, selector: str, text: str):
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.CSS_SELECTOR, selector)
    box.clear()
    box.send_keys(text)


def register_through_page(driver, node: str, address: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, "node-select")).select_by_value(node)
    type_into(driver, "#address", address)
    click(driver, "#register")


def converged(driver, n: int = NODES) -> bool:
    shown = cells(driver)
    return len(shown) == n and {c["group"] for c in shown.values()} == {"0"}


def test_the_page_shows_one_cell_per_node_in_one_colour(page):
    until(page, lambda d: len(cells(d)) == NODES, f"{NODES} cells")
    until(page, converged, "every cell in the converged colour")
    assert page.find_element("id", "badge").text == "converged"


def test_a_registration_made_through_the_page_reaches_every_cell(page, tmp_path):
    until(page, converged, "a converged cluster")
    register_through_page(page, "n3", "10.9.0.1:8080")
    until(page, lambda d: all(c["holds"] for c in cells(d).values()) and len(cells(d)) == NODES,
          "10.9.0.1:8080 held by every cell")
    until(page, converged, "one digest again")
    until(page, lambda d: "converged in" in d.find_element("id", "events").text, "the convergence on the timeline")
    assert f"{NODES} / {NODES} nodes" in page.find_element("id", "track-text").text
    shot = tmp_path / "dashboard.png"
    assert page.save_screenshot(str(shot))
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    copy = os.environ.get("SD_DASHBOARD_SCREENSHOT")  # e.g. runs/dashboard.png, to keep one
    if copy:
        Path(copy).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, copy)


def test_a_partition_made_through_the_page_shows_two_groups_and_heals_back_to_one(page):
    until(page, converged, "a converged cluster")
    type_into(page, "#groups", "n1,n2,n3 | n4,n5,n6")
    click(page, "#partition")
    until(page, lambda d: sorted(map(sorted, groups_drawn(d))) == [["n1", "n2", "n3"], ["n4", "n5", "n6"]],
          "two partition groups")
    register_through_page(page, "n1", "10.9.0.2:8080")
    # Written on one side only: that side holds it and the two sides show two colours.
    until(page, lambda d: {n for n, c in cells(d).items() if c["holds"]} == {"n1", "n2", "n3"},
          "the registration on n1's side only")
    shown = cells(page)
    assert shown["n1"]["group"] != shown["n4"]["group"]
    click(page, "#heal")
    until(page, lambda d: len(groups_drawn(d)) == 1, "one group after heal")
    until(page, lambda d: all(c["holds"] for c in cells(d).values()), "the registration everywhere after heal")
    until(page, converged, "one colour after heal")


def test_cells_picked_on_the_page_are_partitioned_from_the_rest_and_a_kill_is_drawn(page):
    until(page, converged, "a converged cluster")
    click(page, '.cell[data-node="n5"]')
    click(page, '.cell[data-node="n6"]')
    click(page, "#partition-picked")
    until(page, lambda d: sorted(map(sorted, groups_drawn(d))) == [["n1", "n2", "n3", "n4"], ["n5", "n6"]],
          "the picked cells as a group")
    click(page, '.cell[data-node="n2"]')
    click(page, 'button[data-op="kill"]')
    until(page, lambda d: cells(d)["n2"]["state"] == "exited", "n2 drawn as killed")
    assert "killed" in page.find_element("css selector", '.cell[data-node="n2"]').text.lower()


@pytest.mark.integration
def test_a_docker_cluster_shows_its_cells_a_registration_reaches_them_and_a_partition_heals(
        browser, docker_client, node_image, run_tag):
    from harness import Cluster

    from .params import FANOUT, INTERVAL

    with Cluster(nodes=3, name=f"dash-{run_tag}", image=node_image, client=docker_client, interval=INTERVAL,
                 fanout=FANOUT, timeline=False) as cluster:
        cluster.wait_converged(timeout=30)
        url, stop = serve(Hub(ClusterSource(cluster, every=1.0)))
        try:
            browser.get(url)
            until(browser, lambda d: converged(d, 3), "3 cells in one colour")
            until(browser, lambda d: all(float(r.split()[0]) > 0 for r in d.execute_script(
                "return [...document.querySelectorAll('.cell .rps')].map(e => e.textContent.replace('–', '0'))")),
                  "every node's rounds per second from its /metrics")
            register_through_page(browser, "n2", "10.9.0.3:8080")
            until(browser, lambda d: all(c["holds"] for c in cells(d).values()), "the registration on every cell")
            until(browser, lambda d: converged(d, 3), "one colour again")
            type_into(browser, "#groups", "n1 | n2,n3")
            click(browser, "#partition")
            until(browser, lambda d: sorted(map(sorted, groups_drawn(d))) == [["n1"], ["n2", "n3"]], "two groups")
            click(browser, "#heal")
            until(browser, lambda d: len(groups_drawn(d)) == 1, "one group after heal")
            until(browser, lambda d: converged(d, 3), "one colour after heal")
        finally:
            stop()
