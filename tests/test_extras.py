"""Everything the test extra declares imports, every kpal module imports, and under CI no
declared path can hide behind a skip caused by a failed import (see conftest.py)."""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFTEST = Path(__file__).resolve().parent / "conftest.py"

#: Import name of each distribution the ``test`` extra declares.
IMPORT_NAMES = {
    "pytest": "pytest",
    "hypothesis": "hypothesis",
    "ruff": "ruff",
    "matplotlib": "matplotlib",
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
    "threadpoolctl": "threadpoolctl",
    "numba": "numba",
    "dask": "distributed",
    "playwright": "playwright",
    "ssimulacra2": "ssimulacra2",
}


def optional_dependencies() -> dict[str, list[str]]:
    """The distribution names of each extra in pyproject.toml, without version bounds."""
    if sys.version_info >= (3, 11):
        import tomllib

        with open(ROOT / "pyproject.toml", "rb") as file:
            extras = tomllib.load(file)["project"]["optional-dependencies"]
    else:  # Python 3.10: the installed metadata says the same
        from importlib.metadata import requires

        extras = {}
        for requirement in requires("kpal") or []:
            name, _, marker = requirement.partition(";")
            extra = re.search(r"extra\s*==\s*['\"]([^'\"]+)", marker)
            if extra:
                extras.setdefault(extra.group(1), []).append(name)
    return {extra: [re.split(r"[\s<>=!~;\[]", spec.strip(), maxsplit=1)[0].lower()
                    for spec in specs] for extra, specs in extras.items()}


def kpal_modules() -> list[str]:
    """Every module of the kpal package, from the files on disk (kpal/*.py and subpackages)."""
    package = ROOT / "kpal"
    names = []
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


EXTRAS = optional_dependencies()


def test_every_test_extra_dependency_has_an_import_name():
    assert set(EXTRAS["test"]) == set(IMPORT_NAMES)


def test_test_extra_covers_the_optional_paths():
    # The paths behind the plot, fast and dask extras are tested only if the test extra installs
    # them; scikit-learn is the reference of the quality test.
    optional = set(EXTRAS["plot"]) | set(EXTRAS["fast"]) | set(EXTRAS["dask"])
    assert optional | {"scikit-learn"} <= set(EXTRAS["test"])


@pytest.mark.parametrize("distribution", sorted(IMPORT_NAMES))
def test_declared_dependency_imports(distribution):
    importlib.import_module(IMPORT_NAMES[distribution])


def test_kpal_modules_are_found():
    modules = kpal_modules()
    assert {"kpal", "kpal.cli", "kpal.plot", "kpal.cluster.gmm",
            "kpal.coding._entropy_fast"} <= set(modules)


@pytest.mark.parametrize("module", kpal_modules())
def test_kpal_module_imports(module):
    assert importlib.import_module(module).__name__ == module


_SKIPPING_TESTS = """
import pytest

def test_missing_module():
    pytest.importorskip("kpal_no_such_module")

def test_skip_for_another_reason():
    pytest.skip("no named pipes here")

def test_passes():
    pass
"""


@pytest.fixture
def suite(pytester):
    pytester.makeconftest(CONFTEST.read_text(encoding="utf-8"))
    pytester.makepyfile(test_skips=_SKIPPING_TESTS,
                        test_module_skip='import pytest\npytest.importorskip("kpal_nope")\n'
                                         "def test_never_runs():\n    pass\n")
    return pytester


def test_import_skips_fail_under_ci(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_inprocess("-p", "no:cacheprovider", "-rfEs",
                                       "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, skipped=1, failed=1, errors=1)
    result.stdout.fnmatch_lines([
        "*test_missing_module*skipped on a failed import under CI*kpal_no_such_module*",
        "*test_module_skip.py*skipped on a failed import under CI*kpal_nope*",
    ])
    assert result.ret != 0


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_import_skips_stay_skips_outside_ci(suite, monkeypatch, value):
    monkeypatch.setenv("CI", value)
    result = suite.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, skipped=3)
    assert result.ret == 0
