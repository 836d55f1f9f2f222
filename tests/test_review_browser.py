"""The /review page in a real headless Chromium (Debian's chromium + chromium-driver, via selenium):
tag the KubeEdge README with the real model, fix a tag, and find the correction in the store."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from embedtag.corrections import CorrectionStore
from tests.conftest import DEFAULT_INDEX_DIR, REPO_ROOT
from tests.helpers import serve_process

CHROMEDRIVER = Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.allow_network,  # loopback only: the server under test
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMEDRIVER.exists(), reason="needs Debian's chromium-driver (.ci/run installs it)"),
]


def test_review_page_tags_kubeedge_and_stores_a_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    monkeypatch.setenv("SE_OFFLINE", "true")  # Selenium Manager must not download anything
    store = tmp_path / "store.sqlite3"
    readme = (REPO_ROOT / "examples" / "kubeedge.md").read_text(encoding="utf-8")
    options = webdriver.ChromeOptions()
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    with serve_process(DEFAULT_INDEX_DIR, "--store", str(store), model=None) as url:
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
        try:
            driver.get(f"{url}/review")
            wait = WebDriverWait(driver, 60)
            wait.until(lambda d: len(Select(d.find_element(By.ID, "add-tag")).options) > 50)
            driver.find_element(By.ID, "pid").send_keys("1977")
            driver.find_element(By.ID, "description").send_keys(
                "Kubernetes Native Edge Computing Framework (project under CNCF)")
            driver.execute_script("document.getElementById('readme').value = arguments[0];", readme)
            driver.find_element(By.ID, "tag-button").click()
            wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#tags .tag")))
            shown = [e.get_attribute("data-tag") for e in driver.find_elements(By.CSS_SELECTOR, "#tags .tag")]
            assert {"k8s", "cloud-native"} <= set(shown), shown
            assert driver.find_elements(By.CSS_SELECTOR, "#tags .evidence li"), "no README lines shown"
            assert "chance" in driver.find_element(By.ID, "tags").text
            # the fix: cloud-native out, iot in
            driver.find_element(By.CSS_SELECTOR, '#tags .tag[data-tag="cloud-native"] button.remove').click()
            Select(driver.find_element(By.ID, "add-tag")).select_by_value("iot")
            driver.find_element(By.ID, "add-button").click()
            driver.find_element(By.ID, "save-button").click()
            wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "Saved"))
            if os.environ.get("EMBEDTAG_SCREENSHOT"):
                driver.save_screenshot(os.environ["EMBEDTAG_SCREENSHOT"])
        finally:
            driver.quit()
    correction = CorrectionStore(store).get("1977")
    assert correction is not None
    assert set(correction.core) == (set(shown) - {"cloud-native"}) | {"iot"}
    assert "KubeEdge" in correction.readme and correction.description.startswith("Kubernetes Native")
