"""The page at / in a real browser: Debian's chromium, headless, driven through Debian's
chromedriver by selenium, against a real `mnist-server` serving two models trained on the
genuine MNIST (a hand-drawn digit needs a model that has seen real handwriting).

Digits are drawn with W3C input actions (mouse, pen and touch pointers), as a person would;
nothing here downloads a browser or a driver (tests/support/browser.py, which
scripts/screenshot_page.py uses too).
"""

from __future__ import annotations

import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.actions import interaction
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.support.browser import (
    DIGITS,
    WAIT_S,
    chromium,
    clear,
    draw,
    open_page,
    requested_urls,
    wait_answer,
)

# ---------- the server ----------


@pytest.fixture(scope="module")
def trained_models(mnist_dir, tmp_path_factory) -> dict[str, Path]:
    """The CNN (~98.7%) and the linear model (~91%), one epoch each on the genuine MNIST."""
    from tests.conftest import run_trainer

    bases = {}
    for name, extra in (("mnist", ()), ("linear", ("--model", "linear"))):
        base = tmp_path_factory.mktemp("page-models") / name
        result = run_trainer(mnist_dir, base, "--epochs", "1", "--seed", "3", "--no-report", *extra)
        assert result.returncode == 0, result.stderr[-4000:]
        bases[name] = base
    return bases


@pytest.fixture(scope="module")
def page_server(trained_models):
    from tests.support.server_process import ServerProcess

    with ServerProcess(
        ["--model-dir", str(trained_models["mnist"]), "--model", f"linear={trained_models['linear']}"]
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def browser():
    with chromium() as driver:
        yield driver


# ---------- the tests ----------

pytestmark = [pytest.mark.slow, pytest.mark.real_mnist]


def test_the_page_comes_with_a_strict_csp_and_no_inline_code(page_server):
    with urllib.request.urlopen(page_server.http_url + "/", timeout=10) as response:
        csp = response.headers["Content-Security-Policy"]
        html = response.read().decode()
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert "<script>" not in html and " style=" not in html and "http://" not in html and "https://" not in html
    for name in ("page.js", "page.css", "favicon.svg"):
        with urllib.request.urlopen(f"{page_server.http_url}/static/{name}", timeout=10) as response:
            assert response.status == 200
            assert response.headers["Content-Security-Policy"] == csp


def test_drawn_digits_are_read_right_as_they_are_drawn(page_server, browser):
    open_page(browser, page_server.http_url + "/")
    # one digit per kind of pointer: mouse, pen and finger all draw
    for digit, kind in ((7, interaction.POINTER_MOUSE), (2, interaction.POINTER_PEN), (0, interaction.POINTER_TOUCH)):
        clear(browser)
        draw(browser, DIGITS[digit], kind)
        answer = wait_answer(browser)
        assert answer["label"] == str(digit) and answer["top"] == str(digit), (digit, kind, answer)
        assert answer["model"] == "mnist" and answer["version"] == "1"
        assert answer["answered_by"] == "Answered by mnist, version 1"
        assert len(answer["bars"]) == 5 and answer["bars"][0].startswith(str(digit))
        assert f"says {digit}" in answer["announce"]
    # no console errors: a CSP violation would show up here
    severe = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == []


def test_an_uploaded_png_is_classified(page_server, browser, tmp_path, mnist_dir):
    from PIL import Image

    from mnist_trainer.datasets import TEST_IMAGES, TEST_LABELS
    from mnist_trainer.idx import read_idx

    images, labels = read_idx(mnist_dir / TEST_IMAGES), read_idx(mnist_dir / TEST_LABELS)
    index = next(i for i in range(len(labels)) if labels[i] == 4)  # a genuine test-set 4, never seen in training
    path = tmp_path / "four.png"
    # black on white and larger, as a scan would be: the page and the server take care of the rest
    Image.fromarray(255 - images[index]).resize((140, 140), Image.BILINEAR).save(path)
    open_page(browser, page_server.http_url + "/")
    clear(browser)
    browser.find_element(By.ID, "file").send_keys(str(path))
    answer = wait_answer(browser)
    assert answer["label"] == "4", answer


def test_a_file_dropped_on_the_page_is_classified(page_server, browser):
    open_page(browser, page_server.http_url + "/")
    clear(browser)
    # a PNG made in the page (a white 1 on black, as MNIST has it), dropped as a file would be
    browser.execute_script("""
        const c = document.createElement('canvas'); c.width = 56; c.height = 56;
        const g = c.getContext('2d'); g.fillStyle = '#000'; g.fillRect(0, 0, 56, 56);
        g.strokeStyle = '#fff'; g.lineWidth = 5; g.lineCap = 'round';
        g.beginPath(); g.moveTo(30, 10); g.lineTo(27, 46); g.stroke();
        c.toBlob(blob => {
            const data = new DataTransfer();
            data.items.add(new File([blob], 'one.png', {type: 'image/png'}));
            for (const type of ['dragenter', 'dragover', 'drop'])
                document.body.dispatchEvent(new DragEvent(type, {bubbles: true, cancelable: true, dataTransfer: data}));
        }, 'image/png');""")
    assert wait_answer(browser)["label"] == "1"
    assert not browser.find_element(By.ID, "drop-overlay").is_displayed()


def test_the_model_select_switches_the_model_that_answers(page_server, browser):
    open_page(browser, page_server.http_url + "/")
    select_element = browser.find_element(By.ID, "model")
    assert select_element.is_displayed()
    select = Select(select_element)
    assert [o.get_attribute("value") for o in select.options] == ["mnist", "linear"]
    clear(browser)
    draw(browser, DIGITS[0])
    assert wait_answer(browser, "mnist")["label"] == "0"
    select.select_by_value("linear")
    answer = wait_answer(browser, "linear")
    assert answer["answered_by"] == "Answered by linear, version 1"
    # the choice holds for the next drawing, and for a reload of the page in this tab
    clear(browser)
    draw(browser, DIGITS[7])
    assert wait_answer(browser, "linear")["model"] == "linear"
    open_page(browser, page_server.http_url + "/")
    assert Select(browser.find_element(By.ID, "model")).first_selected_option.get_attribute("value") == "linear"
    Select(browser.find_element(By.ID, "model")).select_by_value("mnist")


def test_the_page_asks_nothing_of_another_origin(page_server, browser):
    browser.get_log("performance")  # drop what earlier tests logged
    open_page(browser, page_server.http_url + "/")
    clear(browser)
    draw(browser, DIGITS[7])
    wait_answer(browser)
    urls = requested_urls(browser)
    origin = urlsplit(page_server.http_url)
    # asked while drawing, and once more for the finished digit: at least two for one stroke
    assert sum(urlsplit(u).path == "/api/v1/classify" for u in urls) >= 2, urls
    foreign = [
        u
        for u in urls
        if urlsplit(u).scheme not in ("data", "blob")
        and (urlsplit(u).scheme, urlsplit(u).netloc) != (origin.scheme, origin.netloc)
    ]
    assert foreign == []
    entries = browser.execute_script("return performance.getEntries().map(e => e.name)")
    assert all(not n.startswith("http") or n.startswith(page_server.http_url) for n in entries), entries


def test_a_phone_sized_window_shows_canvas_and_answer_without_sideways_scrolling(page_server):
    with chromium(390, 844, phone=True) as phone:
        open_page(phone, page_server.http_url + "/")
        width, height = phone.execute_script("return [window.innerWidth, window.innerHeight]")
        assert (width, height) == (390, 844)
        assert phone.execute_script("return document.documentElement.scrollWidth") <= width
        canvas = phone.find_element(By.ID, "canvas")
        box = phone.execute_script(
            "const r = arguments[0].getBoundingClientRect(); return [r.left, r.right, r.width];", canvas
        )
        assert box[0] >= 0 and box[1] <= width and box[2] >= 250
        assert canvas.value_of_css_property("touch-action") == "none"
        draw(phone, DIGITS[7], interaction.POINTER_TOUCH)
        assert wait_answer(phone)["label"] == "7"
        assert phone.execute_script("return document.documentElement.scrollWidth") <= width
        # the answer shows below the canvas without scrolling: drawing and answer in one view
        phone.execute_script("window.scrollTo(0, 0)")
        top = phone.execute_script("return document.getElementById('top-label').getBoundingClientRect().bottom")
        assert top <= height, top
        assert phone.find_element(By.ID, "bars").is_displayed()
        assert not phone.find_element(By.ID, "model-picker").get_attribute("hidden")


def test_the_keyboard_reaches_every_control_in_order(page_server, browser):
    open_page(browser, page_server.http_url + "/")  # a fresh page: Tab starts from the top
    reached = []
    for _ in range(3):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        reached.append(browser.execute_script("return document.activeElement.id"))
    assert reached == ["clear", "choose", "model"], reached
    # the focused control is visibly outlined
    ActionChains(browser).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(Keys.SHIFT).perform()
    outline = browser.execute_script(
        "const s = getComputedStyle(document.activeElement);"
        "return [document.activeElement.id, s.outlineStyle, s.outlineWidth];"
    )
    assert outline[0] == "choose" and outline[1] == "solid" and outline[2] != "0px", outline
    # Clear works from the keyboard
    draw(browser, DIGITS[7])
    wait_answer(browser)
    browser.find_element(By.ID, "clear").send_keys(Keys.ENTER)
    WebDriverWait(browser, WAIT_S).until(lambda d: d.find_element(By.ID, "results").get_attribute("data-label") is None)


def test_a_token_is_asked_for_kept_in_the_tab_and_sent(trained_models, tmp_path, start_server):
    tokens = tmp_path / "tokens"
    tokens.write_text("page-secret-token-0123\n")
    with (
        start_server(["--model-dir", str(trained_models["mnist"]), "--auth-token-file", str(tokens)]) as server,
        chromium() as driver,
    ):
        driver.get(server.http_url + "/")
        token_input = WebDriverWait(driver, WAIT_S).until(
            lambda d: d.find_element(By.ID, "token") if d.find_element(By.ID, "token").is_displayed() else False
        )
        token_input.send_keys("wrong")
        token_input.send_keys(Keys.ENTER)
        WebDriverWait(driver, WAIT_S).until(lambda d: "refused the token" in d.find_element(By.ID, "token-reason").text)
        token_input = driver.find_element(By.ID, "token")
        token_input.send_keys("page-secret-token-0123")
        token_input.send_keys(Keys.ENTER)
        WebDriverWait(driver, WAIT_S).until(lambda d: not d.find_element(By.ID, "token-form").is_displayed())
        assert driver.execute_script("return sessionStorage.getItem('mnist-serving.token')") == "page-secret-token-0123"
        draw(driver, DIGITS[7])
        assert wait_answer(driver)["label"] == "7"
        # a single model: nothing to pick
        assert not driver.find_element(By.ID, "model-picker").is_displayed()


def test_api_errors_are_shown_in_the_page(page_server, browser, tmp_path):
    open_page(browser, page_server.http_url + "/")
    # a model the server does not serve: its {"error": ...} reaches the page
    browser.execute_script("""
        const s = document.getElementById('model');
        const o = document.createElement('option'); o.value = 'no-such-model'; o.textContent = 'gone';
        s.append(o); s.value = 'no-such-model';""")
    clear(browser)
    draw(browser, DIGITS[7])
    error = WebDriverWait(browser, WAIT_S).until(
        lambda d: d.find_element(By.ID, "error").text if d.find_element(By.ID, "error").is_displayed() else False
    )
    assert "no-such-model" in error
    # a file that is no image: said in the page, nothing sent
    bad = tmp_path / "not-an-image.png"
    bad.write_bytes(b"not a png")
    browser.find_element(By.ID, "file").send_keys(str(bad))
    WebDriverWait(browser, WAIT_S).until(lambda d: "cannot be read as an image" in d.find_element(By.ID, "error").text)
