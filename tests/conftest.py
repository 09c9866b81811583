"""Shared fixtures (sample paths, small deterministic images) and the CI rule on skips.

Under CI (the environment variable ``CI`` set, as ``.ci/run`` runs), a test or a test module
skipped because an import failed is reported as a failure: every dependency the ``test`` extra
declares is installed there, so such a skip means a broken install or a broken module, and
would otherwise hide a whole path (the compiled entropy coder, the plots) behind an "s".
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
GOLDEN = SAMPLES / "golden"

#: Skip reasons that mean "an import failed" (``pytest.importorskip`` and its kind).
IMPORT_SKIP_MARKERS = ("could not import", "No module named", "ImportError")


def in_ci() -> bool:
    """True when the environment variable CI is set to anything but empty, 0 or false."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false")


def import_skip_reason(report: pytest.TestReport | pytest.CollectReport) -> str | None:
    """The reason of a skip caused by a failed import, or None for any other outcome."""
    if not report.skipped or not isinstance(report.longrepr, tuple):
        return None
    reason = str(report.longrepr[2])
    return reason if any(marker in reason for marker in IMPORT_SKIP_MARKERS) else None


def _fail_import_skip(report: pytest.TestReport | pytest.CollectReport) -> None:
    reason = import_skip_reason(report) if in_ci() else None
    if reason is not None:
        report.outcome = "failed"
        report.longrepr = (
            f"{report.nodeid}: skipped on a failed import under CI, where every dependency of "
            f"the test extra must import: {reason}"
        )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Under CI, a test skipped on a failed import fails instead."""
    report = yield
    _fail_import_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):
    """Under CI, a module skipped on a failed import (module-level importorskip) fails."""
    report = yield
    _fail_import_skip(report)
    return report


def p_image(width: int, height: int, k: int, seed: int = 0) -> Image.Image:
    """A "P" image using exactly k palette entries (indices 0..k-1 all present when N >= k)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=(height, width), dtype=np.uint8)
    n = min(k, labels.size)
    labels.reshape(-1)[:n] = np.arange(n, dtype=np.uint8)
    # Distinct colours, so decoded RGB identifies the index too.
    codes = rng.choice(1 << 24, size=k, replace=False)
    palette = np.stack([(codes >> 16) & 255, (codes >> 8) & 255, codes & 255], axis=1)
    im = Image.fromarray(labels, "P")
    im.putpalette(palette.astype(np.uint8).reshape(-1).tolist())
    return im


@pytest.fixture
def photo() -> Image.Image:
    """A small real photo (NASA astronaut, public domain), 64x48 RGB."""
    with Image.open(SAMPLES / "astronaut.jpg") as im:
        return im.convert("RGB").resize((64, 48), Image.Resampling.LANCZOS)


@pytest.fixture
def rocket_path() -> Path:
    return SAMPLES / "rocket.jpg"


@pytest.fixture
def runner():
    """click's CliRunner, for the command-line tests."""
    from click.testing import CliRunner

    return CliRunner()
