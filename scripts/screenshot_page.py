#!/usr/bin/env python3
"""Screenshot of the page at / with a digit drawn and the answer showing (docs/images/page.png).

    .venv/bin/mnist-server --model-dir models/mnist &      # a model trained on the genuine MNIST
    .venv/bin/python scripts/screenshot_page.py [--url http://127.0.0.1:8501/] [--digit 7]

Headless Debian chromium through Debian's chromedriver, the browser test's own helpers
(tests/support/browser.py): the digit is drawn with pointer input as a person would.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from tests.support.browser import DIGITS, chromium, clear, draw, open_page, save_screenshot, wait_answer  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8501/", help="the page (default %(default)s)")
    parser.add_argument("--digit", type=int, default=7, choices=sorted(DIGITS), help="what to draw")
    parser.add_argument("--model", help="pick this model in the page's model list first")
    parser.add_argument("--size", default="1040x660", help="viewport WIDTHxHEIGHT (default %(default)s)")
    parser.add_argument("--phone", action="store_true", help="emulate a phone (e.g. with --size 390x844)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "images" / "page.png")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    with chromium(width, height, phone=args.phone) as driver:
        open_page(driver, args.url)
        if args.model:
            from selenium.webdriver.common.by import By
            from selenium.webdriver.support.ui import Select

            Select(driver.find_element(By.ID, "model")).select_by_value(args.model)
        clear(driver)
        draw(driver, DIGITS[args.digit])
        answer = wait_answer(driver)
        driver.execute_script("window.scrollTo(0, 0); document.activeElement.blur()")
        save_screenshot(driver, args.out)
    print(f"{args.out}: the page says {answer['top']} ({answer['answered_by']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
