"""Drives the web UI in headless Chromium with selenium, as a user would.

Run by ui.rs: python3 ui_browser.py URL TEAM_TOKEN OTHER_TOKEN ADMIN_TOKEN OUT_DIR
Prints each step; the first failed expectation raises, and the browser is always quit.
Screenshots of the login page, service list, service page, log search and costs go to OUT_DIR.
"""

import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

URL, TOKEN, OTHER, ADMIN, OUT = sys.argv[1:6]


def step(what):
    print("step:", what, flush=True)


def expect(cond, what, driver):
    if not cond:
        raise AssertionError("%s\nat %s\n--- page ---\n%s" % (what, driver.current_url, text(driver)))


def text(driver):
    return driver.find_element(By.TAG_NAME, "body").text


def path(driver):
    rest = driver.current_url[len(URL):]
    return rest or "/"


def shot(driver, name):
    # The whole page, not only the window.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(800, min(int(height) + 40, 4000)))
    file = os.path.join(OUT, name + ".png")
    expect(driver.save_screenshot(file), "screenshot %s saved" % name, driver)
    driver.set_window_size(1280, 900)
    return file


def log_in(driver, token):
    field = driver.find_element(By.NAME, "token")
    field.clear()
    field.send_keys(token)
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))


def follow(driver, element):
    """Clicks a link or button and waits until the next page has replaced this one (a click
    only starts the navigation)."""
    # The current document is marked; the next one is not. (Waiting for the old <html> element
    # to go stale is racy in Chromium: asked while the navigation commits, it answers "node does
    # not belong to the document" instead of "stale element".)
    driver.execute_script("window.pengLeaving = true")
    # After a screenshot the window is resized twice; on a busy machine a click can land before
    # the page is laid out again and go nowhere: wait until the element takes clicks.
    WebDriverWait(driver, 15).until(expected_conditions.element_to_be_clickable(element))
    element.click()
    WebDriverWait(driver, 30, ignored_exceptions=[WebDriverException]).until(
        lambda d: d.execute_script(
            "return window.pengLeaving === undefined && document.readyState === 'complete'"))


def rows_of(driver, table_id):
    """The body rows of the table with id `table_id`, as lists of cell texts."""
    table = driver.find_element(By.ID, table_id)
    return [[c.text for c in r.find_elements(By.TAG_NAME, "td")]
            for r in table.find_elements(By.TAG_NAME, "tr") if r.find_elements(By.TAG_NAME, "td")]


def table_rows(driver, heading):
    """The body rows of the table that follows the <h2> named `heading`."""
    table = driver.find_element(By.XPATH, "//h2[normalize-space()='%s']/following-sibling::div[1]//table" % heading)
    return [r for r in table.find_elements(By.TAG_NAME, "tr") if r.find_elements(By.TAG_NAME, "td")]


def main():
    profile = tempfile.mkdtemp(prefix="peng-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--no-proxy-server", "--window-size=1280,900",
                 "--user-data-dir=" + profile]:
        options.add_argument(flag)
    service = Service("/usr/bin/chromedriver", log_output=os.path.join(OUT, "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    try:
        driver.set_page_load_timeout(30)
        walk(driver)
    finally:
        driver.quit()


def walk(driver):
    step("/ without a token goes to the login page")
    driver.get(URL + "/")
    expect(path(driver) == "/login", "redirected to /login", driver)
    expect(driver.find_elements(By.NAME, "token"), "a token field", driver)
    shot(driver, "login")

    step("a wrong token is refused with a message")
    log_in(driver, "peng_not-a-real-token")
    expect(path(driver).startswith("/login"), "still on the login page", driver)
    expect("That token is not valid." in text(driver), "the error message", driver)

    step("the team token logs in and lists books/bookshelf with 3 / 3 instances")
    log_in(driver, TOKEN)
    expect(path(driver) == "/", "on the service list", driver)
    row_xpath = "//tr[td/a[normalize-space()='books/bookshelf']]"
    row = driver.find_element(By.XPATH, row_xpath)
    if "3 / 3" not in row.text:
        # The list is a snapshot; on a loaded machine an instance may still be starting.
        deadline = time.time() + 20
        while "3 / 3" not in row.text and time.time() < deadline:
            time.sleep(0.5)
            driver.refresh()
            row = driver.find_element(By.XPATH, row_xpath)
    expect("3 / 3" in row.text, "3 / 3 instances in %r" % row.text, driver)
    shot(driver, "services")

    step("the service page shows instances, health sensors, a chart and log lines")
    follow(driver, row.find_element(By.LINK_TEXT, "books/bookshelf"))
    expect(path(driver) == "/services/books/bookshelf", "on the service page", driver)
    instances = table_rows(driver, "Instances")
    expect(len(instances) == 3, "3 instance rows, got %d" % len(instances), driver)
    expect(all("running" in r.text for r in instances), "every instance running", driver)
    health = [r for r in table_rows(driver, "Sensors")
              if r.find_elements(By.TAG_NAME, "td")[0].text == "health"]
    expect(len(health) == 3, "3 health sensor rows, got %d" % len(health), driver)
    expect(all(" ok" in " " + r.text for r in health), "health ok on every instance", driver)
    charts = driver.find_elements(By.CSS_SELECTOR, "svg[aria-label^='latency']")
    expect(len(charts) >= 2, "a chart per sensor and stage, got %d" % len(charts), driver)
    expect(charts[0].find_elements(By.CSS_SELECTOR, "polyline"), "a line in the chart", driver)
    expect("bookshelf listening" in text(driver), "a recent log line", driver)
    databases = driver.find_element(By.XPATH, "//h2[normalize-space()='Databases']/following-sibling::*[1]")
    expect("No database" in databases.text, "no database for this service: %r" % databases.text, driver)

    step("the Usage section charts each instance's memory against its limit, and its CPU")
    usage_xpath = "//h2[normalize-space()='Usage']/following-sibling::*[1]"
    usage = driver.find_element(By.XPATH, usage_xpath)
    # Usage is recorded every 10s: the first point may still be coming.
    deadline = time.time() + 25
    while "No usage recorded" in usage.text and time.time() < deadline:
        time.sleep(1)
        driver.refresh()
        usage = driver.find_element(By.XPATH, usage_xpath)
    captions = [f.text for f in usage.find_elements(By.TAG_NAME, "figcaption")]
    expect(len(captions) == 6, "a CPU and a memory chart per instance: %r" % captions, driver)
    for name in ["integration/0", "production/0", "production/1"]:
        expect(any(c.startswith(name + " · CPU") and "reserved 0.25" in c for c in captions),
               "%s's CPU with the 0.25 cores reserved in %r" % (name, captions), driver)
        expect(any(c.startswith(name + " · memory") and "limit 256.0 MiB" in c for c in captions),
               "%s's memory with its 256Mi limit in %r" % (name, captions), driver)
    memory = usage.find_elements(By.CSS_SELECTOR, "svg[aria-label^='memory of']")
    expect(len(memory) == 3, "a memory chart per instance, got %d" % len(memory), driver)
    expect(all(m.find_elements(By.CSS_SELECTOR, "polyline[stroke-dasharray]") for m in memory),
           "the memory limit as a dashed line in every memory chart", driver)
    shot(driver, "service")

    step("log search finds a message by a word")
    follow(driver, driver.find_element(By.LINK_TEXT, "Logs"))
    expect(path(driver).startswith("/logs"), "on the log search page", driver)
    q = driver.find_element(By.NAME, "q")
    q.clear()
    q.send_keys("listening")
    since = driver.find_element(By.NAME, "since")
    since.clear()
    since.send_keys("1h")
    follow(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    WebDriverWait(driver, 10).until(lambda d: "q=listening" in d.current_url)
    expect("bookshelf listening on 127.0.0.1" in text(driver), "the found message", driver)
    shot(driver, "logs")
    driver.get(URL + "/logs?q=nosuchwordanywhere&since=1h")
    expect("bookshelf listening" not in text(driver), "a word nowhere finds nothing", driver)

    step("the costs page shows the team's instances and nothing of the platform")
    follow(driver, driver.find_element(By.LINK_TEXT, "Costs"))
    expect(path(driver) == "/costs", "on the costs page", driver)
    lines = rows_of(driver, "costs")
    instances = [l for l in lines if l[:2] == ["books", "instances"]]
    expect(len(instances) == 1, "one instances line of books in %r" % lines, driver)
    expect(instances[0][2].startswith("3 instances: 0.75 cpu reserved, "), "3 instances counted: %r" % instances[0], driver)
    expect("0.75 GiB reserved, " in instances[0][2], "their memory reserved and used: %r" % instances[0], driver)
    expect(float(instances[0][4]) > 0, "instances cost something a month: %r" % instances[0], driver)
    expect(all(l[0] == "books" for l in lines[:-1]), "only books lines: %r" % lines, driver)
    expect(lines[-1][0] == "Total", "a total row: %r" % lines[-1], driver)
    expect("unused capacity" not in text(driver), "no platform line for a team", driver)
    capacity = [r[0] for r in rows_of(driver, "capacity")]
    expect(capacity == ["cpu", "memory", "disk"], "capacity of cpu, memory, disk: %r" % capacity, driver)
    shot(driver, "costs")

    step("log out returns to the login page, and the cookie is gone")
    follow(driver, driver.find_element(By.LINK_TEXT, "log out"))
    expect(path(driver) == "/login", "on the login page", driver)
    driver.get(URL + "/")
    expect(path(driver) == "/login", "logged out for good", driver)

    step("another team sees nothing of bookshelf")
    log_in(driver, OTHER)
    expect(path(driver) == "/", "on the service list", driver)
    expect("bookshelf" not in text(driver), "no bookshelf in the other team's list", driver)
    expect(not driver.find_elements(By.CSS_SELECTOR, "main table"), "an empty list", driver)
    driver.get(URL + "/services/books/bookshelf")
    body = text(driver)
    expect("not found" in body.lower(), "a not-found page", driver)
    expect("bookshelf listening" not in body and "running" not in body, "nothing of the service", driver)
    driver.get(URL + "/logs?q=listening&since=1h")
    expect("bookshelf listening" not in text(driver), "none of the other team's logs", driver)
    driver.get(URL + "/costs")
    expect("books" not in text(driver), "none of the other team's costs", driver)
    expect("unused capacity" not in text(driver), "no platform line for the other team", driver)

    step("the admin sees every team's costs and the platform's unused capacity")
    follow(driver, driver.find_element(By.LINK_TEXT, "log out"))
    log_in(driver, ADMIN)
    expect(path(driver) == "/", "on the service list", driver)
    follow(driver, driver.find_element(By.LINK_TEXT, "Costs"))
    expect(path(driver) == "/costs", "on the costs page", driver)
    lines = rows_of(driver, "costs")
    expect(any(l[:2] == ["books", "instances"] for l in lines), "books' instances in %r" % lines, driver)
    expect(any(l[:2] == ["platform", "unused capacity"] for l in lines), "unused capacity in %r" % lines, driver)
    expect(driver.find_elements(By.LINK_TEXT, "Platform"), "the admin's Platform link", driver)
    step("done")


if __name__ == "__main__":
    main()
