"""The tagging page in a real browser: `python -m alti2v.serve --index` as a subprocess on
127.0.0.1, driven by Debian's headless chromium through Selenium (no browser is downloaded):
tags under their categories, the threshold slider, the similar images with thumbnails.

A missing chromium is a failure, not a skip: scripts/setup_env.sh (the README's test command)
installs it. ALTI2V_SCREENSHOT=PATH also saves the screenshot there (docs/serve.png).
"""
import os
import shutil
import socket
import subprocess
import sys
import time

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
FLOOR = 0.01  # The page's floor (static/index.html): every tag above it is fetched once.
CATEGORIES = ("general", "character", "copyright", "meta")  # The sample's, in predict's order.


def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(trained_tagger, tagger_index, tmp_path_factory):
  """The URL of `python -m alti2v.serve` serving the tiny tagger, with its index."""
  _, model_dir = trained_tagger
  port = free_port()
  log = tmp_path_factory.mktemp("serve") / "serve.log"
  with open(log, "w") as out:
    process = subprocess.Popen(
        [sys.executable, "-m", "alti2v.serve", "--model_dir", model_dir, "--port", str(port),
         "--index", tagger_index[0], "--similar_k", "3"],
        stdout=out, stderr=subprocess.STDOUT)
  url = f"http://127.0.0.1:{port}"
  try:
    deadline = time.monotonic() + 180
    while True:
      assert process.poll() is None, f"serve exited: {log.read_text()}"
      assert time.monotonic() < deadline, f"serve did not answer: {log.read_text()}"
      try:
        if httpx.get(f"{url}/v1/info", timeout=2).status_code == 200:
          break
      except httpx.TransportError:
        pass
      time.sleep(0.5)
    yield url
  finally:
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
  missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
  if missing:
    pytest.fail(f"{' and '.join(missing)} missing: the browser test needs Debian's chromium; "
                "run `bash scripts/test.sh` (it installs them) or `apt-get install -y chromium "
                "chromium-driver`")
  options = Options()
  options.binary_location = CHROMIUM
  for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                   "--window-size=1100,800"):
    options.add_argument(argument)
  driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
  try:
    yield driver
  finally:
    driver.quit()


def set_slider(driver, value: float) -> None:
  driver.execute_script(
      "const s = document.getElementById('threshold'); s.value = arguments[0];"
      "s.dispatchEvent(new Event('input'));", value)


def shown_tags(driver) -> list[str]:
  return [e.get_attribute("data-tag") for e in driver.find_elements(By.CSS_SELECTOR, ".tag")
          if e.is_displayed()]


def test_upload_shows_tags_and_the_slider_refilters(server, browser, tiny_dataset,
                                                    tagger_index, tmp_path):
  images, _ = tiny_dataset
  image = os.path.join(images, "0000", "000001.jpg")
  assert image in tagger_index[1]
  api = httpx.post(f"{server}/v1/tag", params={"threshold": FLOOR},
                   files=[("file", ("000001.jpg", open(image, "rb").read()))]).json()
  assert api["results"][0]["tags"], "the model scores no tag above the page's floor"
  # The page shows them by category (predict's order), best first within each.
  expected = sorted(api["results"][0]["tags"], key=lambda t: CATEGORIES.index(t["category"]))

  browser.get(server)
  WebDriverWait(browser, 30).until(
      lambda d: d.find_element(By.ID, "model").text == "tagger model")
  browser.find_element(By.ID, "files").send_keys(image)
  WebDriverWait(browser, 60).until(
      lambda d: d.find_elements(By.CSS_SELECTOR, ".result .count")
      or d.find_elements(By.CSS_SELECTOR, ".result .error"))
  assert not browser.find_elements(By.CSS_SELECTOR, ".result .error")
  assert browser.find_element(By.CSS_SELECTOR, ".result .name").text == "000001.jpg"

  # Every tag the API gives, with its score, in that order, under its category.
  rows = browser.find_elements(By.CSS_SELECTOR, ".tag")
  assert [(r.get_attribute("data-tag"), float(r.get_attribute("data-score"))) for r in rows] == [
      (t["tag"], t["score"]) for t in expected]
  # Grouped: a section per category in predict's order, each tag in its own.
  assert all(r.get_attribute("data-category") == t["category"] for r, t in zip(rows, expected))
  sections = [s.get_attribute("data-category")
              for s in browser.find_elements(By.CSS_SELECTOR, ".category")]
  assert sections == list(CATEGORIES)
  for section in browser.find_elements(By.CSS_SELECTOR, ".category"):
    category = section.get_attribute("data-category")
    assert [r.get_attribute("data-tag") for r in section.find_elements(By.CSS_SELECTOR, ".tag")
            ] == [t["tag"] for t in expected if t["category"] == category]

  # The similar images: the API's list, the upload itself first, each with its thumbnail.
  similar = api["results"][0]["similar"]
  assert len(similar) == 3 and similar[0]["path"] == os.path.abspath(image)
  hits = browser.find_elements(By.CSS_SELECTOR, "ol.similar .hit")
  assert [h.get_attribute("data-path") for h in hits] == [s["path"] for s in similar]
  assert hits[0].find_element(By.CSS_SELECTOR, ".score").text == f"{similar[0]['score']:.3f}"
  WebDriverWait(browser, 30).until(lambda d: all(
      d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", img)
      for img in d.find_elements(By.CSS_SELECTOR, ".hit img.thumb")))
  thumbs = browser.find_elements(By.CSS_SELECTOR, ".hit img.thumb")
  assert [t.get_attribute("src").split("?")[1] for t in thumbs] == [
      f"i={s['i']}" for s in similar]

  def expect_at(value):
    """The page shows exactly the tags scoring >= value, and counts them."""
    set_slider(browser, value)
    want = [t["tag"] for t in expected if t["score"] >= value]
    assert shown_tags(browser) == want
    count = browser.find_element(By.CSS_SELECTOR, ".count")
    assert count.get_attribute("data-shown") == str(len(want))
    assert count.text.startswith(f"{len(want)} of {len(expected)} tags")
    return want

  # At the default 0.5 (no calibration), then all, then the upper half, then none.
  assert browser.find_element(By.ID, "threshold-value").text == "0.50"
  assert shown_tags(browser) == [t["tag"] for t in expected if t["score"] >= 0.5]
  everything = expect_at(0.0)
  assert everything, "the page shows no tags"
  middle = expected[len(expected) // 2]["score"]
  half = expect_at(round(middle, 2))
  assert 0 < len(half) < len(everything)
  set_slider(browser, 1.0)
  assert shown_tags(browser) == [t["tag"] for t in expected if t["score"] >= 1.0]
  assert browser.find_element(By.ID, "threshold-value").text == "1.00"
  expect_at(0.0)

  # A file that is no image shows its reason in its own card.
  broken = tmp_path / "broken.jpg"
  broken.write_bytes(b"not an image")
  browser.find_element(By.ID, "files").send_keys(str(broken))
  WebDriverWait(browser, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".result .error"))
  assert browser.find_element(By.CSS_SELECTOR, ".result .error").text.startswith("not_an_image")
  assert len(browser.find_elements(By.CSS_SELECTOR, ".result")) == 2

  screenshot = tmp_path / "serve.png"
  assert browser.save_screenshot(str(screenshot))
  assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 5000
  if os.environ.get("ALTI2V_SCREENSHOT"):
    shutil.copyfile(screenshot, os.environ["ALTI2V_SCREENSHOT"])
