"""What does choosing k cost? A quality or size target against one encode at the k it chose.

For each photo and target, ``kpal.choose.choose_k`` runs the whole search and
its result is written as a file (payload coding and ``container.write``, what
an encode with ``quality=`` or ``max_size=`` does), timed in turns with one
plain encode at the chosen k (``kpal.codec.encode_image(image, k)``), medians
of ``--repeats``. The ratio is the one the project promises to keep at or
below 2.5. Photos: the corpus's 0.25 MP coffee and 12 MP upscaled astronaut.

Usage::

    python bench/bench_choose.py            # about 4 minutes
    python bench/bench_choose.py --quick    # 0.25 MP only
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import interleaved_median_times, print_machine_info, print_table  # noqa: E402
from corpus import QUARTER_MP, TWELVE_MP, ensure, load_rgb  # noqa: E402

from kpal import codec, container  # noqa: E402
from kpal import coding as codings  # noqa: E402
from kpal.choose import choose_k  # noqa: E402

#: (label, choose_k keywords, coding); sizes are in bytes per pixel, scaled per photo.
TARGETS = (
    ("quality 30-32 dB", {"quality": (30, 32)}, "fixed"),
    ("quality 33-35 dB", {"quality": (33, 35)}, "fixed"),
    ("quality 36-38 dB", {"quality": (36, 38)}, "fixed"),
    ("max-size 0.7 B/px", {"max_size": 0.7}, "fixed"),
    ("max-size 0.35 B/px", {"max_size": 0.35}, "entropy"),
)


def encode_with_target(image, keywords: dict, coding: str) -> tuple[bytes, object]:
    """What an encode with a target does: choose, then code and assemble the file."""
    choice = choose_k(image, coding=coding, **keywords)
    chosen = codings.get(coding)
    k = choice.palette.shape[0]
    payload = choice.payload if choice.payload is not None else chosen.encode(choice.labels, k)
    header = container.Header.for_image(coding=chosen.id, k=k, width=image.shape[1],
                                        height=image.shape[0], payload_length=len(payload))
    return container.write(header, choice.palette, payload), choice


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print_machine_info()
    warnings.simplefilter("ignore", UserWarning)
    photos = {"coffee 0.25 MP": QUARTER_MP}
    if not args.quick:
        photos["astronaut 12 MP"] = TWELVE_MP
    rows = []
    for label, name in photos.items():
        image = load_rgb(ensure(name))
        n_pixels = image.shape[0] * image.shape[1]
        for target, keywords, coding in TARGETS:
            keywords = dict(keywords)
            if "max_size" in keywords:
                keywords["max_size"] = int(keywords["max_size"] * n_pixels)
            data, choice = encode_with_target(image, keywords, coding)
            assert choice.size == len(data)

            def search(keywords=keywords, coding=coding, image=image):
                encode_with_target(image, keywords, coding)

            def single(k=choice.k, coding=coding, image=image):
                codec.encode_image(image, k, coding=coding)

            times = interleaved_median_times({"search": search, "single": single},
                                             repeats=args.repeats)
            below, above = choice.neighbours()
            rows.append({
                "photo": label, "target": f"{target} ({coding})", "chosen k": choice.k,
                "PSNR dB": choice.psnr, "bytes": choice.size,
                "neighbours": ", ".join(
                    f"k={p.k}: {p.psnr:.2f} dB" if p.psnr is not None else f"k={p.k}: {p.size} B"
                    for p in (below, above) if p is not None),
                "measured k": len(choice.curve),
                "search s": times["search"][0], "single encode s": times["single"][0],
                "ratio": times["search"][0] / times["single"][0],
            })
    print_table(rows, ["photo", "target", "chosen k", "PSNR dB", "bytes", "neighbours",
                       "measured k", "search s", "single encode s", "ratio"],
                title="Choosing k: whole search vs one encode at the chosen k (medians)")


if __name__ == "__main__":
    main()
