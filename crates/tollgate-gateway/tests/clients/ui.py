"""The live page in a real headless browser (Chromium through Selenium).

Usage: ui.py URL ADMIN_KEY EXPECTED_HIT_RATE EXPECTED_DENIALS_JSON SCREENSHOT
Prints `ok`, or raises with what the page showed. The page is drawn 1,400 pixels wide, and a
screenshot of it is saved at SCREENSHOT. On the way it makes a key of the team `search` with the
page's form, calls the gateway with it, revokes it with the page's button, and sees it refused.
"""
import json
import sys
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

url, key, hit_rate, denials = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
screenshot = sys.argv[5]

options = Options()
for flag in (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
    "--force-device-scale-factor=1",
):
    options.add_argument(flag)
def call(secret):
    """The status of a chat call made with `secret`."""
    request = urllib.request.Request(
        f"{url}/v1/chat/completions",
        data=json.dumps({"model": "default", "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"Authorization": f"Bearer {secret}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(f"{url}/ui?key={key}")
    wait = WebDriverWait(driver, 20)
    # The figure the page renders from /ui/data equals the gateway's metrics.
    wait.until(lambda d: d.find_element(By.ID, "hit-rate").text == hit_rate)
    # The key left the address bar once the page had it.
    assert "key=" not in driver.current_url, driver.current_url
    # Each provider has a breaker badge; each tenant its denials.
    badges = driver.find_elements(By.CSS_SELECTOR, "#breakers .badge")
    assert badges and all(b.get_attribute("data-state") == "closed" for b in badges), [
        b.text for b in badges
    ]
    drawn = json.loads(driver.find_element(By.ID, "denials").get_attribute("data-values"))
    assert drawn == denials, (drawn, denials)
    # A key made with the page's form: its secret shown once, and it calls.
    wait.until(lambda d: [o.text for o in d.find_elements(By.CSS_SELECTOR, "#new-key-team option")] == ["search"])
    driver.find_element(By.ID, "new-key-name").send_keys("from-the-page")
    driver.find_element(By.CSS_SELECTOR, "#new-key button").click()
    wait.until(lambda d: d.find_element(By.ID, "new-secret").is_displayed())
    secret = driver.find_element(By.CSS_SELECTOR, "#new-secret code").text
    assert secret.startswith("tg-"), secret
    assert call(secret) == 200
    # Listed, and revoked with its button: refused from then on.
    row = '#keys tbody tr[data-name="from-the-page"]'
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row + ".live"))
    driver.find_element(By.CSS_SELECTOR, row + " button.revoke").click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, row + ".revoked"))
    assert call(secret) == 401
    # The latest calls, newest first; a row opens its whole record.
    # Read and clicked in the page in one step each: the table is redrawn every two seconds, and
    # a row found in one call may be gone by the next.
    statuses = lambda d: d.execute_script(
        "return [...document.querySelectorAll('#calls tbody tr.call')].map(r => r.cells[4].textContent)"
    )
    # The revoked key's 401, the last call made, is listed first once the page redraws.
    wait.until(lambda d: statuses(d)[:1] == ["401"])
    assert "429" in statuses(driver) and "200" in statuses(driver), statuses(driver)
    opened = driver.execute_script(
        "const row = document.querySelector('#calls tbody tr.call'); row.click(); return row.dataset.requestId;"
    )
    shown = driver.find_element(By.ID, "call-record")
    wait.until(lambda d: shown.is_displayed())
    record = json.loads(shown.text)
    assert record["request_id"] == opened, (record, opened)
    assert "written" in driver.find_element(By.ID, "calls-note").text
    # The team's spend per day is drawn once the ledger has the call.
    wait.until(lambda d: "search" in json.loads(d.find_element(By.ID, "team-days").get_attribute("data-teams") or "[]"))
    # The charts were drawn: each canvas has pixels that are not blank.
    for chart in ("hits", "rps", "latency", "denials", "spend", "team-days"):
        painted = driver.execute_script(
            "const c = document.getElementById(arguments[0]);"
            "const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            "for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true; return false;",
            chart,
        )
        assert painted, f"the {chart} chart is blank"
    # No text runs past a chart's edge: its last two columns of pixels are untouched.
    for chart in ("hits", "rps", "errors", "latency", "denials", "spend", "team-days"):
        clipped = driver.execute_script(
            "const c = document.getElementById(arguments[0]);"
            "const d = c.getContext('2d').getImageData(c.width - 2, 0, 2, c.height).data;"
            "for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true; return false;",
            chart,
        )
        assert not clipped, f"something in the {chart} chart is cut off at its right edge"
    # Every axis shows five distinct ticks, traffic or none (the first draw has no rate yet).
    for chart in ("hits", "rps", "errors", "latency", "team-days"):
        ticks = json.loads(driver.find_element(By.ID, chart).get_attribute("data-ticks"))
        assert len(ticks) == 5 and len(set(ticks)) == 5, (chart, ticks)
    # The spend row shows what was spent against the budget, whole.
    driver.save_screenshot(screenshot)
    # Without the key the page is refused.
    driver.get(f"{url}/ui")
    assert "invalid_api_key" in driver.page_source, driver.page_source[:300]
    assert driver.find_elements(By.ID, "hit-rate") == []
    print("ok")
finally:
    driver.quit()
