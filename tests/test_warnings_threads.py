"""Each file's warnings reach its own record when several files run on threads of one
process (a Dask worker with several threads), and nothing is left behind."""

from __future__ import annotations

import threading
import warnings
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from kpal import batch
from kpal.errors import KpalWarning, recording, warn
from kpal.options import EncodeOptions


def test_recording_keeps_each_threads_warnings_apart():
    ready = threading.Barrier(2)

    def work(name: str) -> list[str]:
        with recording() as got:
            ready.wait()
            for i in range(50):
                warn(f"{name} {i}")
                warnings.warn(f"{name} foreign {i}", UserWarning, stacklevel=1)
        return got

    with warnings.catch_warnings():
        warnings.simplefilter("always")  # Pillow's and numpy's warnings too, each time
        filters = list(warnings.filters)
        with ThreadPoolExecutor(2) as pool:
            a, b = pool.map(work, ["a", "b"])
        assert warnings.filters == filters
    assert a == [f"a{kind} {i}" for i in range(50) for kind in ("", " foreign")]
    assert b == [f"b{kind} {i}" for i in range(50) for kind in ("", " foreign")]
    # Outside a recording, warnings are shown (here: raised by the test filters) as ever.
    with pytest.warns(KpalWarning, match="after"):
        warn("after")


def test_recording_nests_and_records_every_kpal_warning_whatever_the_filters():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with recording() as outer:
            warn("one")
            with recording() as inner:
                warn("two")
                warn("two")
            warn("three")
    assert outer == ["one", "three"] and inner == ["two", "two"]


def test_files_run_on_threads_each_get_their_own_notes(tmp_path):
    jobs = []
    for colours in range(2, 10):
        pixels = np.zeros((8, 16, 3), np.uint8)
        pixels[:, :, 0] = (np.arange(16) % colours * 20)[None, :]
        path = tmp_path / f"c{colours}.png"
        Image.fromarray(pixels).save(path)
        jobs.append(batch.Job(kind="encode", path=str(path),
                              output=str(tmp_path / f"c{colours}.kpal"),
                              options=EncodeOptions(k=16), force=True))
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(batch.run_job, jobs * 3))
    for result in results:
        colours = int(result.path.rsplit("c", 1)[1].split(".")[0])
        assert result.error is None
        assert result.notes == (f"the image has {colours} distinct colours, no more than "
                                f"k=16: the palette holds exactly those colours (lossless)",)


def test_recording_puts_showwarning_back_and_leaves_logging_alone():
    import logging

    before = warnings.showwarning
    with recording():
        assert warnings.showwarning is not before
    assert warnings.showwarning is before
    logging.captureWarnings(True)
    try:
        captured = warnings.showwarning
        with recording():
            pass
        assert warnings.showwarning is captured
    finally:
        logging.captureWarnings(False)
    assert warnings.showwarning is before  # logging's hook gone: nothing of kpal's left


def test_a_bomb_sized_image_gets_its_note_every_time(tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)  # 3,600 pixels: warned, not refused
    for name in ("a", "b"):  # the same size: Python's default filter shows one warning once
        Image.fromarray(np.full((60, 60, 3), 90, np.uint8)).save(tmp_path / f"{name}.png")
    note = ("Image size (3600 pixels) exceeds limit of 2000 pixels, could be decompression "
            "bomb DOS attack.")
    with warnings.catch_warnings():
        warnings.simplefilter("default")  # a program's filters, not the test suite's
        for round_ in range(2):
            results = list(batch.encode_many(tmp_path, tmp_path / f"out{round_}", jobs=1, k=4))
            assert [r.notes.count(note) for r in results] == [1, 1], results
