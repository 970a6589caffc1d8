#!/usr/bin/env python
"""Coverage-guided fuzzing (atheris: libFuzzer for Python) of the container parser, the entropy decoders and the
whole decode path of every shipped model, with a kept corpus seeded by the project's own encoders.

    python tools/fuzz_coverage.py TARGET [--seconds 60 | --runs N] [--corpus DIR] [--report FILE]
    TARGET: container | entropy | decode

- container: raw bytes to `bitstream.parse` (the CRC check included), and the same bytes with a valid CRC
  appended, so mutations reach every header field.
- entropy: the bytes drive each decoder directly: escape values, the factorized and Gaussian tables of the shipped
  ms-hyperprior through `decode_symbols`, and a multi-pass `PassDecoder` (the context model's coder).
- decode: the bytes are a container body; the harness appends its CRC, then decodes it as a user or the server
  would (image models through `decode_image`, feature models through `ServerDecoder`), pixels capped at 2^16.

Any exception but `CodecError` is a crash (libFuzzer writes the input to crash-*); each input gets --timeout seconds
and the process --rss-limit-mb. After the campaign, coverage.py replays the corpus and reports line coverage of
codec/bitstream.py and codec/entropy/. Corpus default: ~/.cache/codec/fuzz/TARGET (seeds made when empty).
"""
from __future__ import annotations

import argparse
import functools
import json
import random
import struct
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
FUZZ_MAX_PIXELS = 1 << 16
TARGETS = ("container", "entropy", "decode")
DICTIONARY = [b"LCDC", b"\x05", b"\x04", b"\x03", b"\x01\x00", b"ms-hyperprior", b"mgm", b"es-r20-mid",
              b"\x00\x00\x80\x7f", b"\x00\x00\xc0\x7f", b"\xff\xff\xff\xff\x0f", b"\x80\x80\x80\x80\x01"]


def with_crc(body: bytes) -> bytes:
    return body + struct.pack("<I", zlib.crc32(body))


@functools.lru_cache(maxsize=None)
def shipped_tables():
    """(factorized z tables, Gaussian y tables) of the shipped ms-hyperprior, or generic ones without it."""
    from codec.entropy.gaussian import build_gaussian_tables, default_scale_table
    from codec.zoo import load_model, model_cards

    if "ms-hyperprior" in model_cards():
        model, _ = load_model("ms-hyperprior")
        return model.tables["z"], model.tables["y"]
    gaussian = build_gaussian_tables(default_scale_table())
    return gaussian, gaussian


def run_container(data: bytes) -> None:
    from codec import bitstream
    from codec.errors import CodecError

    for candidate in (data, with_crc(data)):
        try:
            bitstream.parse(candidate, max_pixels=FUZZ_MAX_PIXELS)
        except CodecError:
            pass


def run_entropy(data: bytes) -> None:
    import numpy as np

    from codec.entropy.coder import PassDecoder, decode_symbols
    from codec.entropy.escape import decode_escapes
    from codec.errors import CodecError

    if len(data) < 4:
        return
    selector, count, split = data[0], data[1] + 1, 4 + data[2] % max(1, len(data) - 4)
    stream, escapes = data[4:split], data[split:]
    factorized, gaussian = shipped_tables()
    tables = (factorized, gaussian)[selector & 1]
    rng = np.random.default_rng(data[3])
    index = rng.integers(0, tables.num_tables, count)
    try:
        if selector % 3 == 0:
            decode_escapes(escapes, count % 8)
        elif selector % 3 == 1:
            decode_symbols(stream, escapes, index, tables)
        else:
            decoder = PassDecoder(stream, escapes, tables)
            for part in np.array_split(index, 1 + selector % 5):
                decoder.decode(part)
            decoder.finish()
    except CodecError:
        pass


@functools.lru_cache(maxsize=None)
def server_decoder(model: str):
    from codec.split.runtime import ServerDecoder

    return ServerDecoder(model)


def run_decode(data: bytes) -> None:
    from codec import bitstream
    from codec.api import decode_image
    from codec.errors import CodecError

    candidate = with_crc(data)
    try:
        container = bitstream.parse(candidate, max_pixels=FUZZ_MAX_PIXELS)
        if container.kind == "image":
            decode_image(candidate, max_pixels=FUZZ_MAX_PIXELS)
        else:
            server_decoder(container.model).decode(candidate)
    except CodecError:
        pass


RUNNERS = {"container": run_container, "entropy": run_entropy, "decode": run_decode}


def seed_corpus(target: str, folder: Path) -> None:
    """Containers from every shipped model (small images, several qualities); for `entropy`, real streams."""
    import numpy as np
    from PIL import Image

    from codec.api import encode_image, prepared_model
    from codec.entropy.coder import encode_passes, encode_symbols
    from codec.split.runtime import DeviceEncoder
    from codec.zoo import model_cards

    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(0)
    seeds: list[bytes] = []
    if target == "entropy":
        factorized, gaussian = shipped_tables()
        noise = np.random.default_rng(0)
        for selector in range(6):
            tables = (factorized, gaussian)[selector & 1]
            index = np.random.default_rng(selector).integers(0, tables.num_tables, 8)
            symbols = noise.integers(-3, 4, 8)
            stream, escapes = (encode_symbols(symbols, index, tables) if selector % 3 != 2
                               else encode_passes([(symbols[:4], index[:4]), (symbols[4:], index[4:])], tables))
            seeds.append(bytes([selector, 7, len(stream), selector]) + stream + escapes)
    else:
        for name, card in model_cards().items():
            noise = np.random.default_rng(rng.randrange(1 << 30))
            if card.kind == "feature":
                device = DeviceEncoder(name)
                size = device.input_size
                if size <= 64:
                    seeds.append(device.encode(noise.integers(0, 255, (1, size, size, 3), dtype=np.uint8)))
                continue
            top = prepared_model(name)[0].max_quality
            for height, width in ((32, 48), (17, 70)):
                array = noise.integers(0, 255, (height, width, 3), dtype=np.uint8)
                seeds.append(encode_image(Image.fromarray(array), name, quality=rng.uniform(0, top)))
        seeds = [seed[:-4] if target == "decode" else seed for seed in seeds]  # decode: the harness adds the CRC
    for number, seed in enumerate(seeds):
        (folder / f"seed-{number:03d}").write_bytes(seed)


def dictionary_line(token: bytes) -> str:
    """One libFuzzer dictionary entry: the token as a quoted string of \\xNN escapes."""
    escaped = "".join("\\x%02x" % byte for byte in token)
    return f'"{escaped}"\n'


def fuzz(target: str, corpus: Path, seconds: int, runs: int | None, timeout: int, rss_limit_mb: int) -> None:
    import atheris

    with atheris.instrument_imports(include=["codec"]):
        import codec.api  # noqa: F401
        import codec.bitstream  # noqa: F401
        import codec.entropy.coder  # noqa: F401
        import codec.entropy.context  # noqa: F401
        import codec.split.runtime  # noqa: F401
    runner = RUNNERS[target]
    shipped_tables()  # load models before the clock starts

    def one_input(data: bytes) -> None:
        runner(bytes(data))

    dictionary = corpus.parent / f"{target}.dict"
    dictionary.write_text("".join(dictionary_line(token) for token in DICTIONARY))
    arguments = [sys.argv[0], str(corpus), f"-dict={dictionary}", f"-timeout={timeout}", f"-rss_limit_mb={rss_limit_mb}",
                 f"-max_total_time={seconds}", f"-artifact_prefix={corpus.parent}/{target}-", "-print_final_stats=1"]
    if runs is not None:
        arguments.append(f"-runs={runs}")
    atheris.Setup(arguments, one_input)
    atheris.Fuzz()


def coverage_report(target: str, corpus: Path) -> dict:
    """Replay the corpus under coverage.py (a separate process) and return line coverage of the decode surfaces."""
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); sys.path.insert(0, {str(ROOT)!r})\n"
              "from pathlib import Path\nimport fuzz_coverage\n"
              f"runner = fuzz_coverage.RUNNERS[{target!r}]\n"
              f"for path in sorted(Path({str(corpus)!r}).iterdir()):\n    runner(path.read_bytes())\n")
    data_file = corpus.parent / f".coverage-{target}"
    replay = corpus.parent / f"replay-{target}.py"
    replay.write_text(script)
    subprocess.run([sys.executable, "-m", "coverage", "run", f"--data-file={data_file}", "--source=codec", str(replay)],
                   check=True, cwd=ROOT)
    report = subprocess.run([sys.executable, "-m", "coverage", "json", f"--data-file={data_file}", "-o", "-"],
                            check=True, cwd=ROOT, capture_output=True, text=True)
    files = json.loads(report.stdout)["files"]

    def percent(prefix: str) -> float:
        chosen = [summary["summary"] for name, summary in files.items() if name.startswith(prefix)]
        covered = sum(s["covered_lines"] for s in chosen)
        total = sum(s["num_statements"] for s in chosen)
        return round(100 * covered / total, 1) if total else 0.0

    return {"corpus_inputs": len(list(corpus.iterdir())), "bitstream_percent": percent("codec/bitstream.py"),
            "entropy_percent": percent("codec/entropy/")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=TARGETS)
    parser.add_argument("--seconds", type=int, default=60, help="campaign length")
    parser.add_argument("--runs", type=int, help="stop after this many inputs instead")
    parser.add_argument("--corpus", type=Path, help="default ~/.cache/codec/fuzz/TARGET")
    parser.add_argument("--timeout", type=int, default=5, help="seconds per input before it counts as a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--coverage-only", action="store_true", help="replay the corpus for coverage, no fuzzing")
    parser.add_argument("--seed-only", action="store_true", help=argparse.SUPPRESS)  # (the seeding subprocess)
    parser.add_argument("--report", type=Path, help="write the coverage figures here (JSON)")
    args = parser.parse_args()
    corpus = args.corpus or Path.home() / ".cache" / "codec" / "fuzz" / args.target
    if args.seed_only:
        seed_corpus(args.target, corpus)
        return
    if not corpus.is_dir() or not any(corpus.iterdir()):  # seeds come from another process: the codec modules
        subprocess.run([sys.executable, __file__, args.target, "--seed-only", "--corpus", str(corpus)], check=True)
        # must first be imported here, under atheris' instrumentation
    if args.coverage_only:
        figures = coverage_report(args.target, corpus)
        print(json.dumps(figures))
        if args.report:
            args.report.write_text(json.dumps(figures, indent=1))
        return
    fuzz(args.target, corpus, args.seconds, args.runs, args.timeout, args.rss_limit_mb)


if __name__ == "__main__":
    main()
