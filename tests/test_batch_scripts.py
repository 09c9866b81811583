"""A batch with worker processes started from a plain script: the workers never run the
script again, so it needs no ``if __name__ == "__main__":`` guard, and a script read from
stdin works too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import kpal

#: An unguarded script: its body would run again in every worker that imported it.
SCRIPT = """
from pathlib import Path
from kpal.batch import encode_many
print("body runs", flush=True)
results = list(encode_many("album", "out", jobs=2, k=4))
print(sorted(str(r.error) for r in results), flush=True)
"""


@pytest.fixture
def album(tmp_path):
    folder = tmp_path / "album"
    folder.mkdir()
    rng = np.random.default_rng(11)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).save(
            folder / f"{name}.png")
    return tmp_path


def _env() -> dict:
    root = str(Path(kpal.__file__).resolve().parent.parent)
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        [root, *filter(None, [os.environ.get("PYTHONPATH")])])}


def _check(album, done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["body runs", "['None', 'None', 'None']"]
    assert "Traceback" not in done.stderr
    for name in ("a", "b", "c"):
        with Image.open(album / "album" / f"{name}.png") as image:
            expected = kpal.encode(image, k=4)
        assert (album / "out" / f"{name}.kpal").read_bytes() == expected


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_an_unguarded_script_runs_its_batch_once(album):
    (album / "job.py").write_text(SCRIPT)
    done = subprocess.run([sys.executable, "job.py"], cwd=album, env=_env(),
                          capture_output=True, text=True, timeout=300)
    _check(album, done)


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_a_script_read_from_stdin_runs_its_batch(album):
    done = subprocess.run([sys.executable, "-"], input=SCRIPT, cwd=album, env=_env(),
                          capture_output=True, text=True, timeout=300)
    _check(album, done)


def test_the_calling_main_module_is_back_after_each_start(album):
    from kpal import _workers

    main = sys.modules["__main__"]
    process = _workers.process_class("spawn")(target=len, args=((),))
    process.start()
    process.join(60)
    assert process.exitcode == 0
    assert sys.modules["__main__"] is main
