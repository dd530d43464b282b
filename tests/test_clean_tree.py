"""`make demo` and `make test` leave `git status` clean (issue 14): the npm step of the Makefile
never rewrites the tracked lock file, and everything the demo, the tests and the CLI write in
the checkout is ignored by git."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.skipif(shutil.which("npm") is None or shutil.which("make") is None, reason="no npm")
def test_the_makefile_npm_step_leaves_the_lock_file_byte_for_byte(tmp_path: Path) -> None:
    """Run the Makefile's own npm rule in a copy of the toolchain manifest whose lock file is
    written the way another npm would write it (indent, one field fewer): a plain `npm
    install` rewrites such a file, the rule must not."""
    shutil.copy(ROOT / "package.json", tmp_path / "package.json")
    lock = json.loads((ROOT / "package-lock.json").read_text(encoding="utf-8"))
    del lock["packages"]["node_modules/@foundry-rs/anvil"]["license"]
    (tmp_path / "package-lock.json").write_text(json.dumps(lock, indent=4) + "\n")
    before = _sha256(tmp_path / "package-lock.json")
    tracked = _sha256(ROOT / "package-lock.json")

    made = subprocess.run(
        ["make", "-f", str(ROOT / "Makefile"), "-C", str(tmp_path), "node_modules/.installed"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert made.returncode == 0, made.stdout + made.stderr
    assert "--no-save" in made.stdout  # the rule that ran is the Makefile's
    assert (tmp_path / "node_modules" / "@foundry-rs" / "anvil" / "package.json").is_file()
    assert (tmp_path / "node_modules" / ".installed").is_file()
    assert _sha256(tmp_path / "package-lock.json") == before
    assert _sha256(ROOT / "package-lock.json") == tracked


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="no git")
@pytest.mark.parametrize(
    "path",
    [
        "deployments/31337.json",  # `chainaudit deploy` from the checkout
        ".data/log.sqlite",  # the CLI's default data directory
        ".demo/deployments/31337.json",  # make demo
        "reports/bench.json",  # make bench
        "node_modules",  # a symlink to a shared install, as well as a folder
        ".venv/.installed",
        ".venv-slither/.installed",
        "out/AuditAnchor.sol/AuditAnchor.json",  # forge
        "cache/solidity-files-cache.json",
        ".hypothesis/examples/x",
        "chainaudit/_native.cpython-311-x86_64-linux-gnu.so",
        "build/lib/chainaudit/__init__.py",
    ],
)
def test_what_the_demo_and_the_tests_write_is_ignored(path: str) -> None:
    result = subprocess.run(
        ["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", path],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, f"{path} is not ignored by git: {result.stderr}"


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="no git")
def test_the_lock_file_and_the_manifest_stay_tracked() -> None:
    for path in ("package-lock.json", "package.json", "anvil.env"):
        result = subprocess.run(
            ["git", "-C", str(ROOT), "check-ignore", "--no-index", "-q", path],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 1, f"{path} must not be ignored"
