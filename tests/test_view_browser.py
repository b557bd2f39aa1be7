"""``curate view`` in a real browser: Debian's headless Chromium driven by Selenium through Debian's
chromedriver (``apt-get install chromium chromium-driver``). Skips when either is absent.

On the quickstart version (built by ``curate run``), with a ``<script>`` payload planted in one
trace: filter by a flag from the filter panel, open the trace, check the highlighted prediction and
the flag's measure, follow the rejected split's drop reason (funnel chart, then the trace's link)
to the near-duplicate cluster, and check that the payload never ran. Screenshots are kept in the
test's tmp folder (``CURATE_VIEW_SCREENSHOT=path`` copies the table screenshot there, as for
docs/img/view.png).
"""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

import polars as pl
import pytest

CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"))
                 if p), None)
CHROMEDRIVER = os.environ.get("CHROMEDRIVER") or shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None,
                                reason="chromium/chromedriver not installed (apt-get install -y chromium chromium-driver)")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed (pip install 'curate[dev]')")
pytest.importorskip("duckdb", reason="needs the view extra")

from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait
from test_view import PAYLOAD, build_quickstart

from curate.view.app import Server
from curate.view.data import Store


@pytest.fixture()
def driver(tmp_path: Path):
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1500,1100",
              f"--user-data-dir={tmp_path / 'profile'}", "--disable-extensions", "--no-first-run"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)  # Debian's driver: nothing downloaded
    d.set_page_load_timeout(30)
    yield d
    d.quit()


def _plant_payload(version: Path) -> int:
    """The payload in the problem, reasoning and answer of the train split's row 5; its index."""
    f = min(glob.glob(str(version / "data" / "train-*.parquet")))
    df = pl.read_parquet(f)
    mark = pl.int_range(pl.len()) == 5
    df = df.with_columns(pl.when(mark).then(pl.lit(PAYLOAD) + pl.col(c)).otherwise(pl.col(c)).alias(c)
                         for c in ("problem", "reasoning", "answer_text"))
    df.write_parquet(f)
    return 5


def test_view_in_headless_chromium(tmp_path: Path, driver) -> None:
    version = build_quickstart(tmp_path / "run")
    evil = _plant_payload(version)
    train = pl.read_parquet(sorted(glob.glob(str(version / "data" / "train-*.parquet"))))
    rejected = pl.read_parquet(sorted(glob.glob(str(version / "data" / "rejected-*.parquet"))))
    store = Store(version, index_dir=tmp_path / "index")
    assert store.wait_index(60, search=True)
    wait = WebDriverWait(driver, 30)

    def navigate(action) -> None:
        """Do ``action`` (a click, a select) and wait for the next page to replace this one."""
        old = driver.find_element(By.TAG_NAME, "html")
        action()
        wait.until(EC.staleness_of(old))
        wait.until(lambda d: d.execute_script("return document.readyState") == "complete")
        assert "<h1>500" not in driver.page_source and "Internal Server Error" not in driver.page_source

    shots = tmp_path / "screenshots"
    shots.mkdir()
    try:
        with Server(store) as base:
            driver.get(base + "/")
            wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#panel[data-loaded='1']")))
            assert len(driver.find_elements(By.CSS_SELECTOR, "#panel svg.chart")) == 4  # funnel, flags, length, pass rate
            driver.save_screenshot(str(shots / "table.png"))
            if os.environ.get("CURATE_VIEW_SCREENSHOT"):
                shutil.copyfile(shots / "table.png", os.environ["CURATE_VIEW_SCREENSHOT"])

            # 1. filter by a flag from the panel's select (the script submits the form on change)
            flagged = train.with_row_index("i").filter(pl.col("flags").list.contains("no_boxed"))
            navigate(lambda: Select(driver.find_element(By.ID, "f-flag")).select_by_value("no_boxed"))
            assert "flag=no_boxed" in driver.current_url
            assert int(driver.find_element(By.ID, "total").text.replace(",", "")) == flagged.height
            links = driver.find_elements(By.CSS_SELECTOR, "#rows a.open")
            assert len(links) == flagged.height

            # 2. open the trace: the prediction is highlighted in the answer, the flag's measure is shown
            navigate(links[0].click)
            row = flagged.row(0, named=True)
            assert driver.find_element(By.ID, "pred").text == row["pred_answer"]
            assert driver.find_element(By.ID, "answer").text == row["answer_text"]
            mark_bg = driver.find_element(By.ID, "pred").value_of_css_property("background-color")
            assert mark_bg not in ("rgba(0, 0, 0, 0)", "transparent"), mark_bg  # visibly highlighted
            meas = driver.find_element(By.CSS_SELECTOR, "tr[data-flag='no_boxed']").text
            assert "yes" in meas and "require_boxed=True" in meas
            driver.find_element(By.CSS_SELECTOR, "#reasoning-box summary").click()  # collapsible
            assert not driver.find_element(By.ID, "reasoning").is_displayed()

            # 3. the funnel's drop reason (a chart bar) filters the rejected split
            driver.get(base + "/")
            wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, "#panel[data-loaded='1']")))
            bar = driver.find_element(By.CSS_SELECTOR, "#chart-funnel a[data-label='  - near_duplicate'] rect")
            navigate(bar.click)
            assert "drop_reason=near_duplicate" in driver.current_url
            near = rejected.filter(pl.col("drop_reason") == "near_duplicate")
            assert int(driver.find_element(By.ID, "total").text.replace(",", "")) == near.height
            cells = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#rows a.drop_reason")]
            assert cells and set(cells) == {"near_duplicate"}

            # 4. open a rejected trace: drop reason and the near-duplicate cluster side by side
            navigate(driver.find_element(By.CSS_SELECTOR, "#rows a.open").click)
            assert driver.find_element(By.ID, "drop-reason").text == "near_duplicate"
            dups = driver.find_elements(By.CSS_SELECTOR, "#dups-sec .dup")
            assert len(dups) >= 2
            boxes = [d.rect for d in dups[:2]]
            assert abs(boxes[0]["y"] - boxes[1]["y"]) < 5 and boxes[0]["x"] != boxes[1]["x"]  # side by side
            driver.save_screenshot(str(shots / "rejected-trace.png"))
            navigate(driver.find_element(By.ID, "drop-reason").click)  # back to the rows dropped for that reason
            assert "split=rejected" in driver.current_url
            assert int(driver.find_element(By.ID, "total").text.replace(",", "")) == near.height

            # 5. the planted payload shows as text and never runs
            driver.get(f"{base}/trace/train/0/{evil}")
            wait.until(EC.presence_of_element_located((By.ID, "reasoning")))
            assert driver.execute_script("return window.__pwned || 0") == 0
            assert "PWNED" not in driver.title
            assert driver.find_element(By.ID, "reasoning").text.startswith("<script>document.title='PWNED'")
            assert len(driver.find_elements(By.CSS_SELECTOR, "main script, main img")) == 0
            driver.get(base + "/?q=" + "PWNED")
            wait.until(EC.presence_of_element_located((By.ID, "rows")))
            assert driver.execute_script("return window.__pwned || 0") == 0
            driver.save_screenshot(str(shots / "payload-search.png"))

            logs = [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
            assert logs == [], logs
    finally:
        store.close()
    assert (shots / "table.png").stat().st_size > 10_000
