"""The review page in a real browser (headless Chromium through Selenium): a reviewer enters a
key, opens a queued record and decides. Skipped where Chromium, chromedriver or selenium are
missing (`apt-get install chromium chromium-driver && pip install selenium`)."""

import shutil
import time

import pytest

from audit import RecordDraft
from audit.keys import create_key
from hallmark.compose import open_store
from hallmark.settings import Settings

pytestmark = pytest.mark.slow  # a browser and a `hallmark serve` process


@pytest.fixture
def browser():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("chromium and chromedriver are not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for arg in ("--headless=new", "--no-sandbox", "--window-size=1400,900"):
        options.add_argument(arg)
    options.binary_location = chromium
    drv = webdriver.Chrome(service=Service(driver), options=options)
    yield drv
    drv.quit()


def test_a_reviewer_decides_from_the_page(browser, tmp_path, hallmark_server):
    from selenium.webdriver.common.by import By

    store = open_store(Settings(data_dir=tmp_path))
    store.record_many(
        [
            RecordDraft(
                generation_id=f"gen-{i}",
                prompt=f"scene {i}",
                policy_name="default",
                policy_version="1",
                model_id="tiny",
                model_version="1",
                status="blocked",
                blocked_stage="prompt",
                reason="blocked",
                verdicts=[
                    {
                        "stage": "prompt",
                        "classifier": "minilm",
                        "classifier_version": "1",
                        "category": "sexual",
                        "score": 0.5 + i / 10,
                        "threshold": 0.6,
                        "action": "block",
                        "calibrated": True,
                        "detail": "",
                    }
                ],
            )
            for i in range(3)
        ]
    )
    _, key = create_key(store, "reviewer", "rita")
    base = hallmark_server(tmp_path)

    def wait_for(condition):
        for _ in range(100):
            if condition():
                return
            time.sleep(0.1)
        raise AssertionError(f"page never got there; message: {browser.find_element(By.ID, 'message').text}")

    browser.get(f"{base}/review")
    field = browser.find_element(By.ID, "key")
    field.send_keys(key)
    browser.execute_script("arguments[0].dispatchEvent(new Event('change'))", field)
    rows = lambda: browser.find_elements(By.CSS_SELECTOR, "#rows tr")  # noqa: E731
    wait_for(lambda: len(rows()) == 3)
    assert "scene 2" in rows()[0].text  # highest score first
    rows()[0].click()  # the key field loses focus here: that must not reload the list
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#detail form"))
    assert "gen-2" in browser.find_element(By.ID, "detail").text
    browser.find_element(By.CSS_SELECTOR, "#detail input").send_keys("clearly sexual")
    browser.find_element(By.CSS_SELECTOR, "#detail form button").click()
    wait_for(lambda: "rita: confirm" in browser.find_element(By.ID, "detail").text)
    wait_for(lambda: len(rows()) == 2)
    assert [d.decision for d in store.decisions(store.get("gen-2").seq)] == ["confirm"]
    assert [e for e in browser.get_log("browser") if e["level"] == "SEVERE"] == []
    store.dispose()


def test_a_third_party_verifies_a_file_from_the_verify_page(browser, released, settings, hallmark_server):
    from selenium.webdriver.common.by import By

    base = hallmark_server(settings.data_dir)
    browser.get(f"{base}/verify")
    browser.find_element(By.ID, "file").send_keys(str(released.output))
    browser.find_element(By.ID, "go").click()
    answer = browser.find_element(By.ID, "answer")
    for _ in range(300):
        if answer.is_displayed() and answer.text:
            break
        time.sleep(0.1)
    assert answer.text.startswith("Authentic") and answer.get_attribute("class") == "good", answer.text
    lines = browser.find_element(By.ID, "lines").text
    assert "signer trusted, hash binding intact" in lines and "Invisible watermark: detected" in lines
