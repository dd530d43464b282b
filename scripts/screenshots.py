"""Regenerate the web page's screenshots in ``docs/screenshots/``.

Runs the browser tests that reach each page state (overview after an anchor, a valid bundle
verified, a tampered bundle refused; on the demo's data, the records, one record, the deal's
story, the compliance view and a buyer's overview at 1280 and 390 px) with
``CHAINAUDIT_SCREENSHOTS`` set, so every picture shows a real server, a real log and a real
chain. Needs Debian's ``chromium``.

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "docs" / "screenshots"
TESTS = [
    "tests/web/test_page.py::test_operator_appends_a_record_and_anchors_it",
    "tests/web/test_page.py::test_a_valid_bundle_passes_every_check_in_the_browser",
    "tests/web/test_page.py::test_a_tampered_bundle_fails_the_check_that_sees_it[payload-changed]",
    # the demo's own data (one `make demo` in a directory of its own), at 1280 and 390 px
    "tests/web/test_page_in_use.py::test_every_view_fits_the_window_and_passes_axe",
]


def main() -> int:
    env = {**os.environ, "CHAINAUDIT_SCREENSHOTS": str(TARGET)}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS]
    code = subprocess.call(command, cwd=ROOT, env=env)
    if code == 0:
        for png in sorted(TARGET.glob("*.png")):
            print(png.relative_to(ROOT))
    return code


if __name__ == "__main__":
    sys.exit(main())
