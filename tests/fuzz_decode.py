"""Fuzz the .kpal decoder with mutated files (standalone; pytest does not collect it).

Every input goes through the three ways a file is read — ``kpal.decode``,
``Image.open(...).load()`` and ``codec.inspect`` (``kpal info``) — and the run
stops counting it as fine only if one of them

* raises anything but the documented exceptions (``KpalError``, Pillow's
  ``DecompressionBombError``, and ``UnidentifiedImageError`` from
  ``Image.open`` when the magic is gone),
* disagrees with the others (one decodes, another rejects; different pixels),
* decodes a file whose bytes changed while its stored CRC did not,
* takes longer than ``--slow`` seconds, or runs out of the memory cap.

Usage::

    python tests/fuzz_decode.py 100000                # atheris if installed, else plain
    python tests/fuzz_decode.py 100000 --engine plain --seed 7 --crashes /tmp/crashes

``plain`` is a seeded loop over this file's structure-aware mutator (flips,
header fields at their limits, truncation, insertion, CRC redone half the
time): reproducible, and it keeps going after a crash. ``atheris`` feeds
libFuzzer's coverage-guided byte mutations of the seed corpus, each input
checked as is and with its CRC redone (two files per run); it stops at the
first crash, as libFuzzer does.

Crashing inputs are written to ``--crashes`` (default ``fuzz-crashes/``),
named by their SHA-1; a crash that is fixed becomes a regression file in
``tests/corrupt/``. The helpers here (corpus, mutator, oracle) are shared with
``tests/test_fuzz.py``, which runs a short version in CI.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import random
import re
import struct
import sys
import time
import traceback
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

import kpal
from kpal import codec, container
from kpal import coding as codings
from kpal.errors import KpalError

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "samples" / "golden"
CORRUPT = ROOT / "tests" / "corrupt"

#: Exceptions a reader of untrusted bytes may see (spec/kpal.md §9).
DOCUMENTED = (KpalError, Image.DecompressionBombError)

# Header field offsets and struct formats (spec/kpal.md §2, §2.1), for targeted patches;
# the last two exist in version 2 only (on a version 1 file they patch the palette).
FIELDS = {
    "version": (9, ">B"), "coding": (10, ">B"), "bits_per_index": (11, ">B"),
    "k": (12, ">H"), "width": (14, ">I"), "height": (18, ">I"), "payload_length": (22, ">I"),
    "flags": (26, ">B"), "metadata_length": (27, ">I"),
}
#: Metadata block types to insert (spec §3.2): known, skippable, must-understand, invalid.
BLOCK_TYPES = [b"iccp", b"xtra", b"exif", b"Xtra", b"ICCP", b"ic1p", b"\0\0\0\0"]
ICC = GOLDEN / "srgb.icc"
#: Values at and around every limit of the specification.
INTERESTING = {
    ">B": [0, 1, 2, 3, 7, 8, 9, 0x7F, 0x80, 0xFF],
    ">H": [0, 1, 2, 3, 128, 255, 256, 257, 0x7FFF, 0xFFFF],
    ">I": [0, 1, 2, 3, 7, 8, 255, 256, 4096, 16384, 65536, (1 << 24) - 1, 1 << 24,
           1 << 30, (1 << 31) - 1, 1 << 31, (1 << 32) - 1],
}


class Crash(Exception):
    """An input that made the decoder misbehave; the message says how."""


# ------------------------------------------------------------------ corpus
def _p_image(width: int, height: int, k: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=(height, width), dtype=np.uint8)
    labels.reshape(-1)[: min(k, labels.size)] = np.arange(min(k, labels.size), dtype=np.uint8)
    im = Image.fromarray(labels, "P")
    im.putpalette(rng.integers(0, 256, 3 * k, dtype=np.uint8).tolist())
    return im


def _version_2_file(width: int, height: int, k: int, seed: int, coding: str) -> bytes:
    """An RGBA file, with an ICC profile and a skippable block every other seed."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, size=(height, width), dtype=np.uint8)
    palette = rng.integers(0, 256, (k, 4), dtype=np.uint8)
    palette[0, 3] = 0
    metadata = [("iccp", ICC.read_bytes()), ("xtra", b"x" * seed)] if seed % 2 else []
    chosen = codings.get(coding)
    payload = chosen.encode(labels, k)
    header = container.Header.for_image(
        coding=chosen.id, k=k, width=width, height=height, payload_length=len(payload),
        alpha=True, metadata_length=len(container.pack_metadata(metadata)))
    return container.write(header, palette, payload, metadata=metadata)


def _version_1_file(im: Image.Image, coding: str) -> bytes:
    """The version 1 file of a "P" image in ``coding``, assembled from its payload."""
    labels = np.asarray(im)
    k = len(im.getpalette()) // 3
    chosen = codings.get(coding)
    payload = chosen.encode(labels, k)
    header = container.Header.for_image(
        coding=chosen.id, k=k, width=im.width, height=im.height, payload_length=len(payload),
        alpha=False, metadata_length=0)
    palette = np.array(im.getpalette(), np.uint8).reshape(k, 3)
    return container.write(header, palette, payload)


def seed_corpus() -> list[bytes]:
    """Golden files, regression files and small files in every registered coding,
    version 1 and version 2 (RGBA palettes, metadata blocks)."""
    files = [p.read_bytes() for p in sorted(GOLDEN.glob("*.kpal"))]
    files += [p.read_bytes() for p in sorted(CORRUPT.glob("*.kpal"))]
    shapes = [(1, 1, 1), (3, 2, 2), (7, 3, 3), (5, 5, 5), (9, 4, 16), (6, 6, 17), (16, 3, 200),
              (8, 8, 256)]
    for name in sorted(codings.BY_NAME):
        for seed, (w, h, k) in enumerate(shapes):
            im = _p_image(w, h, k, seed)
            if name == "context":  # coding 3 is reached through the registry, whatever
                files.append(_version_1_file(im, name))  # the encode options offer
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                files.append(kpal.encode(im, coding=name))
        for seed, (w, h, k) in enumerate(shapes[:4]):
            files.append(_version_2_file(w, h, k, seed, name))
    return files


# ------------------------------------------------------------------ mutations
def with_checksum(body_and_crc: bytes) -> bytes:
    """Replace the last 4 bytes by the CRC-32 of the rest (so mutations reach the payload)."""
    body = bytes(body_and_crc[:-4]) if len(body_and_crc) >= 4 else bytes(body_and_crc)
    return body + struct.pack(">I", zlib.crc32(body))


def patch_field(data: bytes, field: str, value: int) -> bytes:
    """Overwrite one header field (no-op on a file too short to hold it)."""
    offset, fmt = FIELDS[field]
    size = struct.calcsize(fmt)
    if len(data) < offset + size:
        return data
    return data[:offset] + struct.pack(fmt, value) + data[offset + size:]


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, bool]:
    """Apply one to four random mutations; return the result and whether its CRC was redone."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(10)
        n = len(out)
        if op == 0 and n:  # flip one bit
            i = rng.randrange(n)
            out[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # random byte
            out[rng.randrange(n)] = rng.randrange(256)
        elif op == 2:  # header field at an interesting value
            field = rng.choice(list(FIELDS))
            value = rng.choice(INTERESTING[FIELDS[field][1]])
            out = bytearray(patch_field(bytes(out), field, value))
        elif op == 3:  # truncate
            del out[rng.randrange(n + 1):]
        elif op == 4:  # insert random bytes
            i = rng.randrange(n + 1)
            out[i:i] = rng.randbytes(rng.randint(1, 16))
        elif op == 5 and n:  # delete a range
            i = rng.randrange(n)
            del out[i : i + rng.randint(1, 16)]
        elif op == 6:  # append
            out += rng.randbytes(rng.randint(1, 64))
        elif op == 7 and n > 1:  # copy a block over another place
            i, j = rng.randrange(n), rng.randrange(n)
            block = out[i : i + rng.randint(1, 32)]
            out[j : j + len(block)] = block
        elif op == 8 and len(out) >= container.header_size(out):  # make the lengths agree
            size, channels, metadata = container.header_size(out), 3, 0
            if size == container.HEADER_SIZE_V2:
                channels = 4 if out[26] & container.FLAG_ALPHA else 3
                metadata = struct.unpack_from(">I", out, 27)[0]
            length = max(0, len(out) - size - 4 - metadata
                         - channels * struct.unpack_from(">H", out, 12)[0])
            out = bytearray(patch_field(bytes(out), "payload_length", length))
        elif op == 9 and container.header_size(out) == container.HEADER_SIZE_V2 \
                and len(out) >= container.HEADER_SIZE_V2:  # a metadata block, lengths kept
            start = container.HEADER_SIZE_V2 + (4 if out[26] & 1 else 3) * struct.unpack_from(
                ">H", out, 12)[0]
            data = rng.choice([b"", rng.randbytes(rng.randint(1, 40)), ICC.read_bytes()])
            claimed = rng.choice([len(data), len(data), len(data) + 1, max(0, len(data) - 1),
                                  (1 << 32) - 1])
            block = rng.choice(BLOCK_TYPES) + struct.pack(">I", claimed) + data
            out[start:start] = block
            metadata = struct.unpack_from(">I", out, 27)[0] + len(block)
            out = bytearray(patch_field(bytes(out), "metadata_length", metadata & 0xFFFFFFFF))
    fixed = rng.random() < 0.5
    result = with_checksum(bytes(out)) if fixed else bytes(out)
    return result, fixed


# ------------------------------------------------------------------ oracle
def _attempt(fn):
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn(), None
    except MemoryError as e:
        raise Crash(f"MemoryError: {e}") from e
    except Exception as e:  # classified by the caller
        return None, e


def _open_and_load(data: bytes) -> Image.Image:
    with Image.open(io.BytesIO(data), formats=["KPAL"]) as im:
        im.load()
        return im.copy()


def check(data: bytes, *, must_reject: bool = False) -> str:
    """Run ``data`` through every reader; return ``"ok"`` or the rejecting exception's name.

    Parameters
    ----------
    data : bytes
        A candidate file.
    must_reject : bool
        The bytes differ from a valid file but the checksum was not redone:
        every reader has to refuse it.

    Raises
    ------
    Crash
        Undocumented exception, readers disagreeing, or a changed file accepted.
    """
    decoded, e_decode = _attempt(lambda: kpal.decode(data))
    opened, e_open = _attempt(lambda: _open_and_load(data))
    report, e_inspect = _attempt(lambda: codec.inspect(data))

    for where, e in (("kpal.decode", e_decode), ("codec.inspect", e_inspect)):
        if e is not None and not isinstance(e, DOCUMENTED):
            raise Crash(f"{where} raised {type(e).__name__}: {e}") from e
    if e_open is not None and not isinstance(e_open, DOCUMENTED):
        no_magic = not data.startswith(container.MAGIC)
        if not (no_magic and isinstance(e_open, UnidentifiedImageError)):
            raise Crash(f"Image.open/load raised {type(e_open).__name__}: {e_open}") from e_open

    accepted = {"kpal.decode": e_decode is None, "Image.open/load": e_open is None,
                "codec.inspect": e_inspect is None and report["problem"] is None}
    if len(set(accepted.values())) != 1:
        raise Crash(f"readers disagree on acceptance: {accepted}; decode: {e_decode!r}, "
                    f"open: {e_open!r}, inspect: {e_inspect or report['problem']!r}")
    if e_decode is not None:
        return type(e_decode).__name__
    if must_reject:
        raise Crash("a file changed without a new checksum was decoded")
    a, b = np.asarray(decoded), np.asarray(opened)
    if a.shape != b.shape or not np.array_equal(a, b) or (
        decoded.getpalette("RGBA") != opened.getpalette("RGBA")
    ) or decoded.info != opened.info:
        raise Crash("kpal.decode and Image.open disagree on the pixels, palette or info")
    header = container.read_header(data)
    if decoded.size != (header.width, header.height) or decoded.mode != "P":
        raise Crash(f"decoded {decoded.mode} {decoded.size} for header {header}")
    if a.size and int(a.max()) >= header.k:
        raise Crash(f"decoded index {int(a.max())} >= k={header.k}")
    return "ok"


# ------------------------------------------------------------------ runners
def _save_crash(folder: Path, data: bytes, message: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"crash-{hashlib.sha1(data).hexdigest()[:16]}.kpal"
    path.write_bytes(data)
    path.with_suffix(".txt").write_text(message + "\n")
    return path


def run_plain(n: int, seed: int, crashes: Path, slow: float) -> int:
    rng = random.Random(seed)
    corpus = seed_corpus()
    outcomes: Counter[str] = Counter()
    found: dict[str, Path] = {}
    start = time.perf_counter()
    for i in range(n):
        original = rng.choice(corpus)
        data, fixed = mutate(original, rng)
        t0 = time.perf_counter()
        try:
            outcome = check(data, must_reject=not fixed and data != original)
            elapsed = time.perf_counter() - t0
            if elapsed > slow:
                raise Crash(f"took {elapsed:.1f} s (limit {slow} s)")
        except Crash as e:
            outcome = "CRASH"
            key = re.sub(r"\d+", "N", str(e))[:80]  # one file per kind of crash
            if key not in found:
                found[key] = _save_crash(crashes, data, f"{e}\n{traceback.format_exc()}")
                print(f"crash #{len(found)} at input {i}: {e} -> {found[key]}", flush=True)
        outcomes[outcome] += 1
        if outcome == "ok" and len(corpus) < 2000:
            corpus.append(data)  # valid files found by mutation become new seeds
        if (i + 1) % 10000 == 0:
            print(f"{i + 1} inputs, {time.perf_counter() - start:.0f} s", flush=True)
    _print_summary(n, outcomes, time.perf_counter() - start, len(found))
    return 1 if found else 0


def _print_summary(n: int, outcomes: Counter, seconds: float, n_crashes: int) -> None:
    print(f"\n{n} inputs in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f}/s), "
          f"{n_crashes} distinct crashes")
    for outcome, count in outcomes.most_common():
        print(f"  {outcome:<24} {count}")


def run_atheris(n: int, seed: int, crashes: Path) -> int:  # pragma: no cover - optional
    """libFuzzer's own byte mutations, guided by coverage of the instrumented decoder."""
    import tempfile

    import atheris

    crashes.mkdir(parents=True, exist_ok=True)
    corpus_dir = Path(tempfile.mkdtemp(prefix="kpal-fuzz-corpus-"))
    for i, data in enumerate(seed_corpus()):
        (corpus_dir / f"seed-{i:03d}.kpal").write_bytes(data)
    outcomes: Counter[str] = Counter()

    def one_input(raw: bytes) -> None:
        # As given (mostly a checksum failure) and with the CRC redone, so that
        # mutations also reach the payload decoders.
        outcomes[check(raw)] += 1
        outcomes[check(with_checksum(raw))] += 1
        runs = sum(outcomes.values()) // 2
        if runs == n or runs % 10000 == 0:  # libFuzzer exits without running atexit
            _print_summary(2 * runs, outcomes, time.perf_counter() - start, 0)

    _instrument_kpal(atheris)
    start = time.perf_counter()
    argv = [sys.argv[0], str(corpus_dir), f"-runs={n}", f"-seed={seed + 1}",
            f"-artifact_prefix={crashes}/", "-print_final_stats=1"]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()
    return 0


def _instrument_kpal(atheris) -> None:  # pragma: no cover - optional
    """Coverage feedback from kpal's own code only.

    ``atheris.instrument_all()`` also instruments numpy and Pillow, and the
    process then grows about twice as fast (measured: some 30-45 MB per 1000
    runs, against about 15 MB here; libFuzzer stops at 2 GB by default).
    """
    import inspect

    for name, module in list(sys.modules.items()):
        if name != "kpal" and not name.startswith("kpal."):
            continue
        for obj in vars(module).values():
            if getattr(obj, "__module__", None) != name:
                continue
            members = vars(obj).values() if inspect.isclass(obj) else [obj]
            for member in members:
                function = getattr(member, "__func__", member)
                if inspect.isfunction(function):
                    atheris.instrument_func(function)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("n", type=int, help="Number of inputs to run.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the mutation loop.")
    parser.add_argument("--engine", choices=["auto", "plain", "atheris"], default="auto",
                        help="atheris when importable (auto), else the plain loop.")
    parser.add_argument("--crashes", type=Path, default=Path("fuzz-crashes"),
                        help="Folder for crashing inputs.")
    parser.add_argument("--slow", type=float, default=5.0,
                        help="Seconds after which one input counts as a hang.")
    parser.add_argument("--max-pixels", type=int, default=1 << 22,
                        help="Image.MAX_IMAGE_PIXELS during the run, so that no accepted "
                             "header makes one input slow; the guard itself is fuzzed too.")
    parser.add_argument("--memory-cap", type=int, default=4096,
                        help="Address-space cap in MiB (Linux): a runaway allocation "
                             "raises MemoryError and is reported as a crash.")
    args = parser.parse_args(argv)
    Image.MAX_IMAGE_PIXELS = args.max_pixels
    try:
        import resource

        cap = args.memory_cap << 20
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    except (ImportError, ValueError, OSError):
        print("note: no memory cap on this platform")
    engine = args.engine
    if engine == "auto":
        try:
            import atheris  # noqa: F401

            engine = "atheris"
        except ImportError:
            engine = "plain"
    print(f"engine {engine}, {args.n} inputs, seed {args.seed}, "
          f"codings {sorted(codings.BY_NAME)}", flush=True)
    if engine == "atheris":
        return run_atheris(args.n, args.seed, args.crashes)
    return run_plain(args.n, args.seed, args.crashes, args.slow)


if __name__ == "__main__":
    sys.exit(main())
