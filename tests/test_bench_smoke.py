"""Smoke tests for the benchmark helpers in bench/ (no timing is asserted)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import bench_decode, bench_quantize, common, corpus  # noqa: E402


def test_format_table_aligns_numbers_right_and_text_left():
    rows = [{"name": "kpal", "seconds": 1.234, "psnr": float("inf")},
            {"name": "pngquant", "seconds": 123.4, "psnr": None}]
    text = common.format_table(rows, ["name", "seconds", "psnr"], "Title")
    assert text.splitlines() == [
        "### Title",
        "",
        "| name     | seconds | psnr |",
        "|----------|--------:|-----:|",
        "| kpal     |    1.23 |  inf |",
        "| pngquant |   123.4 |      |",
    ]


def test_print_table_prints_the_formatted_table(capsys):
    common.print_table([{"a": 0.5}], ["a"])
    assert capsys.readouterr().out == "|     a |\n|------:|\n| 0.500 |\n\n"


def test_median_time_returns_every_run():
    calls = []
    median, runs = common.median_time(lambda: calls.append(1), repeats=3)
    assert len(calls) == 3 and len(runs) == 3
    assert median == sorted(runs)[1]


def test_run_cmd_measured_reports_the_child_memory_and_exit_code():
    # The child touches 64 MiB; its peak RSS must show it, and its exit code must pass through.
    code = "import sys; b = bytearray(64 << 20); b[::4096] = b'x' * len(b[::4096]); sys.exit(3)"
    wall, rss, returncode = common.run_cmd_measured([sys.executable, "-c", code])
    assert returncode == 3
    assert rss >= 64 << 20
    assert wall > 0


def test_run_cmd_measured_does_not_count_this_process_memory():
    ballast = np.ones(200 << 20, np.uint8)  # this process now peaks above 200 MiB
    _, rss, returncode = common.run_cmd_measured(["true"])
    assert returncode == 0
    assert rss < 64 << 20
    del ballast


def test_mse_and_psnr_of_known_difference():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 48  # one sample off by 48: MSE = 48**2 / 48 = 48
    assert common.mse(a, b) == 48.0
    assert common.psnr(a, b) == pytest.approx(10 * np.log10(255**2 / 48))
    assert common.psnr(a, a) == float("inf")


def test_machine_info_names_cpu_and_versions():
    info = common.machine_info()
    assert set(info) >= {"date", "cpu", "cores", "python", "numpy", "pillow"}
    assert info["numpy"] == np.__version__


def test_corpus_knows_the_issue_images():
    assert {"astronaut", "coffee", "chelsea", corpus.QUARTER_MP, corpus.TWELVE_MP} <= set(
        corpus.BUILDERS)
    with pytest.raises(KeyError, match="unknown corpus image 'nope'"):
        corpus.ensure("nope")


def _fake_rows():
    rows = []
    for image in ("astronaut", corpus.TWELVE_MP):
        for k in (16, 256):
            for method, seconds, psnr, rss in (
                (bench_quantize.KPAL_CLI, 1.0, 40.0, 200 << 20),
                (bench_quantize.KPAL, 0.5, 40.0, 150 << 20),
                (bench_quantize.PNGQUANT, 5.0, 39.0, 100 << 20),
                (bench_quantize.IMAGEQUANT, 1.0, 39.5, 90 << 20),
                (bench_quantize.SKLEARN, 2.0, 40.02, 300 << 20),
            ):
                rows.append({"image": image, "megapixels": 1.0, "k": k, "method": method,
                             "seconds": seconds, "psnr": psnr, "rss": rss,
                             "deterministic": True})
    return rows


def test_comparisons_use_the_matching_kpal_route():
    rows = _fake_rows()
    bench_quantize.add_comparisons(rows)
    png = next(r for r in rows if r["method"] == bench_quantize.PNGQUANT)
    assert png["ref"] == bench_quantize.KPAL_CLI
    assert png["time_ratio"] == pytest.approx(0.2)
    assert png["psnr_delta"] == pytest.approx(1.0)
    iq = next(r for r in rows if r["method"] == bench_quantize.IMAGEQUANT)
    assert iq["ref"] == bench_quantize.KPAL
    assert iq["time_ratio"] == pytest.approx(0.5)


def test_acceptance_states_each_target(capsys):
    checks = bench_quantize.acceptance(_fake_rows())
    met = {c["target"]: c["met"] for c in checks}
    assert met["PSNR ≥ sklearn − 0.05 dB (astronaut, k=16)"] == "yes"
    assert met["PSNR at k=256 ≥ libimagequant + 0.4 dB (corpus mean)"] == "yes"
    assert met[f"CLI time ≤ 0.25× pngquant ({corpus.TWELVE_MP}, k=256)"] == "yes"
    assert met[f"CLI encode peak RSS ≤ 300 MiB ({corpus.TWELVE_MP})"] == "yes"
    assert met["byte-identical .kpal with 1 and 2 BLAS/OpenMP threads"] == "yes"
    bench_quantize.print_results(_fake_rows())
    assert "| 256 | pngquant" in capsys.readouterr().out


def test_acceptance_flags_a_missed_target():
    rows = _fake_rows()
    for row in rows:
        if row["method"] == bench_quantize.SKLEARN:
            row["psnr"] = 41.0
    met = {c["target"]: c["met"] for c in bench_quantize.acceptance(rows)}
    assert met["PSNR ≥ sklearn − 0.05 dB (astronaut, k=16)"] == "NO"


@pytest.mark.parametrize("bits", [1, 3, 8])
def test_decode_bench_indexed_image_uses_every_index(bits):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    palette, labels = bench_decode.base_quantization(rgb)
    image = bench_decode.indexed_image(palette, labels, bits)
    assert image.mode == "P" and image.size == (96, 64)
    assert np.unique(np.asarray(image)).tolist() == list(range(1 << bits))


def test_photo_summary_per_k_mean_worst_and_count_below_the_tolerance():
    rows = [
        {"photo": "a", "k": 16, "delta": 0.10},
        {"photo": "b", "k": 16, "delta": -0.20},
        {"photo": "c", "k": 16, "delta": bench_quantize._psnr_delta(np.inf, np.inf)},
        {"photo": "d", "k": 16},  # skipped (timed out): no delta
        {"photo": "a", "k": 256, "delta": -0.04},
    ]
    below = f"below −{bench_quantize.SKLEARN_TOLERANCE_DB} dB"
    first, second = bench_quantize.photo_summary(rows)
    assert first["k"] == 16 and first["photos"] == 3
    assert first["mean dB"] == pytest.approx(-0.1 / 3)
    assert (first["min dB"], first["worst photo"], first[below]) == (-0.20, "b", 1)
    assert (second["k"], second["photos"], second[below]) == (256, 1, 0)
