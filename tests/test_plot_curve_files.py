"""``kpal plot --kind curve`` draws the files ``kpal encode -k`` writes, for an image with
alpha or an ICC profile too, and labels only the PSNRs it measured."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from kpal import plot as plots  # noqa: E402
from kpal.cli import cli  # noqa: E402
from kpal.codec import encode_image  # noqa: E402

from .test_decode_profile import swapped_primaries_profile  # noqa: E402


def _figure_of(monkeypatch):
    drawn = {}
    real = plots.curve

    def spy(*args, **kwargs):
        drawn["fig"] = real(*args, **kwargs)
        return drawn["fig"]

    monkeypatch.setattr(plots, "curve", spy)
    return drawn


def _photo() -> np.ndarray:
    rng = np.random.default_rng(7)
    ramp = np.linspace(0, 255, 48)
    rgb = np.stack([ramp[None, :].repeat(40, 0), ramp[:, None][:40].repeat(48, 1),
                    np.full((40, 48), 90.0)], axis=2)
    return np.clip(rgb + rng.normal(0, 9, rgb.shape), 0, 255).astype(np.uint8)


def _curve(fig):
    psnr, size = fig.axes[0].get_lines()[0], fig.axes[1].get_lines()[0]
    return (np.asarray(psnr.get_xdata()), np.asarray(psnr.get_ydata()),
            np.asarray(size.get_ydata()))


@pytest.mark.parametrize("kind", ["alpha", "profile"])
def test_the_curve_shows_the_files_encode_writes(runner, tmp_path, monkeypatch, kind):
    path = tmp_path / f"{kind}.png"
    if kind == "alpha":
        rgba = np.dstack([_photo(), np.linspace(0, 255, 48, dtype=np.uint8)[None, :]
                          .repeat(40, 0)])
        Image.fromarray(rgba, "RGBA").save(path)
    else:
        Image.fromarray(_photo()).save(path, icc_profile=swapped_primaries_profile())
    drawn = _figure_of(monkeypatch)
    result = runner.invoke(cli, ["plot", str(path), "--kind", "curve", "-o",
                                 str(tmp_path / "c.png")])
    assert result.exit_code == 0, result.output
    ks, psnrs, sizes = _curve(drawn["fig"])
    assert ks.tolist() == [2, 4, 8, 16, 32, 64, 128, 256]
    for k, psnr, size in zip(ks, psnrs, sizes, strict=True):
        with Image.open(path) as im:
            encoded = encode_image(im, k=int(k))
        assert psnr == pytest.approx(encoded.psnr(), abs=1e-9)
        assert size * 1024 == pytest.approx(len(encoded.data))  # KiB on the axis
    title = drawn["fig"].axes[0].get_title()
    if kind == "alpha":
        assert "raw 32-bit is 7,680 bytes" in title.replace("\n", " ")
        assert "composites over black and white" in title.replace("\n", " ")
    else:
        assert "raw 24-bit is 5,760 bytes" in title.replace("\n", " ")


def test_psnr_ticks_stay_within_the_measured_values():
    fig = plots.curve(_photo(), size=(500, 300))
    _, psnrs, _ = _curve(fig)
    ticks = fig.axes[0].get_yticks()
    step = ticks[1] - ticks[0]
    assert len(ticks) >= 2
    assert ticks.min() > psnrs.min() - step and ticks.max() <= psnrs.max()
    low, high = fig.axes[0].get_ylim()
    assert low < psnrs.min() - (psnrs.max() - psnrs.min())  # the sizes keep the lower half
