#!/usr/bin/env python
"""Coverage-guided fuzzing (atheris: libFuzzer for Python) of the container parser, the entropy decoders and the
whole decode path of every shipped model, with a kept corpus seeded by the project's own encoders.

    python tools/fuzz_coverage.py TARGET [--seconds 60 | --runs N] [--corpus DIR] [--report FILE]
    TARGET: container | entropy | decode | roundtrip
    python tools/fuzz_coverage.py all --seconds 150 240 --report tools/results/fuzz_campaign.json
        # a campaign: each target in turn in its own process (seconds per target, or one value for all), then
        # coverage over every corpus; executions, findings (crash-/timeout-/oom- files) and coverage in the report
    python tools/fuzz_coverage.py all --coverage-only    # line coverage by every target's corpus together

- container: raw bytes to `bitstream.parse` (the CRC check included), and the same bytes with a valid CRC
  appended, so mutations reach every header field.
- entropy: the bytes drive each decoder directly: escape values, the factorized and Gaussian tables of the shipped
  ms-hyperprior through `decode_symbols`, and a multi-pass `PassDecoder` (the context model's coder).
- decode: the bytes are a container body; the harness appends its CRC, then decodes it as a user or the server
  would (image models through `decode_image`, feature models through `ServerDecoder`), pixels capped at 2^16.
- roundtrip: encoder and decoder must agree. The bytes build probability tables (arbitrary PMFs, Gaussian scales),
  symbols in and far outside them, and a split into passes; or escape values; or a small image for a shipped model.
  Decoding must give back exactly what was encoded (symbols, escapes; the image model's container decodes, codes
  the same bytes twice, and its training forward gives finite bits): any difference raises, a crash to libFuzzer.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]
FUZZ_MAX_PIXELS = 1 << 16
TARGETS = ("container", "entropy", "decode", "roundtrip")
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
    """Parse the bytes (and the bytes with a valid CRC); what parses as the current version must write and parse
    back to the same fields (older versions are read, never written)."""
    from codec import bitstream
    from codec.errors import CodecError

    for candidate in (data, with_crc(data)):
        try:
            container = bitstream.parse(candidate, max_pixels=FUZZ_MAX_PIXELS)
        except CodecError:
            continue
        if candidate[4] == bitstream.VERSION and bitstream.parse(bitstream.write(container), max_pixels=FUZZ_MAX_PIXELS) != container:
            raise Disagreement("a parsed container wrote and parsed back differently")


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


def run_decode(data: bytes) -> None:
    from codec.errors import CodecError
    from fuzz_decode import decode_any  # imported here, under the coverage instrumentation: what a user would run

    try:
        decode_any(with_crc(data), FUZZ_MAX_PIXELS)
    except CodecError:
        pass


class Disagreement(AssertionError):
    """Encoder and decoder (or two runs of the encoder) disagree: a bug, reported as a crash."""


def fuzzed_tables(data: bytes):
    """Up to 4 tables from the bytes: arbitrary PMFs (with offsets and tail masses) or Gaussian tables."""
    import numpy as np

    from codec.entropy.gaussian import build_gaussian_tables
    from codec.entropy.tables import TableSet

    count = 1 + data[0] % 4
    if data[1] & 1:
        scales = 0.11 + np.frombuffer(data[2 : 2 + count].ljust(count, b"\0"), np.uint8) / 4.0
        return build_gaussian_tables(scales)
    pmfs, offsets, tails = [], [], []
    for table in range(count):
        chunk = data[2 + 8 * table : 10 + 8 * table].ljust(8, b"\1")
        length = 1 + chunk[0] % 7
        pmfs.append(np.frombuffer(chunk[1 : 1 + length].ljust(length, b"\0"), np.uint8).astype(np.float64))
        offsets.append(int(np.int8(chunk[7])))
        tails.append(chunk[1] / 255.0)
    return TableSet.from_pmfs(pmfs, offsets, tails)


def roundtrip_symbols(data: bytes) -> None:
    import numpy as np

    from codec.entropy.coder import PassDecoder, decode_symbols, encode_passes, encode_symbols, ideal_bits
    from codec.entropy.tables import TableSet

    tables = fuzzed_tables(data)
    tables = TableSet.from_tensors(tables.to_tensors("t"), "t")  # as a model loads them from its weights
    raw = np.frombuffer(data[34:], np.int8).astype(np.int64)
    symbols = raw * (1 + data[2] % 64)  # large factors push symbols far outside the tables: escapes
    index = (np.arange(len(symbols)) * (1 + data[3] % 5)) % tables.num_tables
    bits = ideal_bits(symbols, index, tables)
    if not np.isfinite(bits) or bits < 0:
        raise Disagreement(f"ideal bits {bits}")
    passes = [(part_symbols, part_index) for part_symbols, part_index in
              zip(np.array_split(symbols, 1 + data[4] % 4), np.array_split(index, 1 + data[4] % 4))]
    if len(passes) == 1:
        stream, escapes = encode_symbols(symbols, index, tables)
        decoded = decode_symbols(stream, escapes, index, tables)
    else:
        stream, escapes = encode_passes(passes, tables)
        decoder = PassDecoder(stream, escapes, tables)
        decoded = np.concatenate([decoder.decode(part_index) for _, part_index in passes])
        decoder.finish()
    if not np.array_equal(decoded, symbols):
        raise Disagreement("decoded symbols differ from the encoded ones")


def roundtrip_escapes(data: bytes) -> None:
    import numpy as np

    from codec.entropy.escape import MAX_ESCAPE, EscapeReader, decode_escapes, encode_escapes
    from codec.errors import CodecError

    values = np.frombuffer(data[: len(data) // 4 * 4], "<i4").astype(np.int64)
    try:
        encoded = encode_escapes(values)
    except CodecError:
        if np.abs(values).max() <= MAX_ESCAPE:
            raise Disagreement("the encoder refused codable escape values") from None
        return  # -2**31: refused by the encoder as by the decoder
    if not np.array_equal(decode_escapes(encoded, len(values)), values):
        raise Disagreement("escape values changed")
    reader = EscapeReader(encoded)
    parts = [reader.read(len(part)) for part in np.array_split(values, 3)]
    reader.finish()
    if not np.array_equal(np.concatenate(parts), values):
        raise Disagreement("escape values read in parts changed")


@functools.lru_cache(maxsize=None)
def image_models() -> tuple[str, ...]:
    from codec.zoo import model_cards

    return tuple(sorted(name for name, card in model_cards().items() if card.kind == "image"))


def roundtrip_image(data: bytes) -> None:
    import numpy as np
    import torch
    from PIL import Image

    from codec.api import decode_image, encode_image, prepared_model

    names = image_models()
    if not names or len(data) < 4:
        return
    name = names[data[0] % len(names)]
    model = prepared_model(name)[0]
    quality = data[1] / 255 * model.max_quality
    height, width = 1 + data[2] % 24, 1 + data[3] % 24
    pixels = np.resize(np.frombuffer(data[4:] or b"\x80", np.uint8), (height, width, 3))
    image = Image.fromarray(pixels)
    container = encode_image(image, name, quality=quality)
    if encode_image(image, name, quality=quality) != container:
        raise Disagreement(f"{name}: the same image coded to different bytes")
    if decode_image(container).size != (width, height):
        raise Disagreement(f"{name}: decoded size differs")
    with torch.no_grad():  # the training forward on the same pixels (padded to the transforms' 64-pixel grid)
        x = torch.from_numpy(np.resize(pixels, (64, 64, 3))).permute(2, 0, 1)[None].float() / 255
        output = model(x, torch.tensor([quality]))
        bits = output["bits"] if "bits" in output else sum(
            -torch.log2(likelihood).sum() for likelihood in output["likelihoods"].values())
    if not bool(torch.isfinite(torch.as_tensor(bits)).all()) or not bool(torch.isfinite(output["x_hat"]).all()):
        raise Disagreement(f"{name}: the training forward gave non-finite bits or pixels")


@functools.lru_cache(maxsize=None)
def fresh_models() -> tuple:
    """One small untrained model per image family, its tables frozen by `update()` and reloaded the way shipped
    weights load them (the path every new model takes before its first export)."""
    import torch

    from codec.registry import create_model, family_names

    torch.manual_seed(0)
    models = []
    for family in family_names("image"):
        model = create_model(family, lambdas=(0.002, 0.02), n=16, m=48).eval()
        model.update()
        model.load_table_state(model.table_state())
        models.append(model)
    return tuple(models)


def roundtrip_fresh_model(data: bytes) -> None:
    """A fresh model codes a small image from the bytes; its decoder rebuilds the same pixels as a second decode
    and the aux loss (the bottleneck's quantile fit) is finite."""
    import numpy as np
    import torch

    models = fresh_models()
    model = models[data[0] % len(models)]
    height, width = 1 + data[1] % 20, 1 + data[2] % 20
    pixels = np.resize(np.frombuffer(data[3:] or b"\x80", np.uint8), (1, 3, height, width))
    x = torch.from_numpy(pixels.copy()).float() / 255
    quality = (data[1] % 2) * model.max_quality
    streams = model.compress(x, quality)
    first, second = (model.decompress(streams, quality, height, width) for _ in range(2))
    if tuple(first.shape[-2:]) != (height, width) or not torch.equal(first, second):
        raise Disagreement(f"{type(model).__name__}: decoding is not repeatable")
    if not torch.isfinite(model.aux_loss()):
        raise Disagreement(f"{type(model).__name__}: aux loss not finite")


def roundtrip_container(data: bytes) -> None:
    """Container fields from the bytes (names too long or not ASCII, short digests, NaN quality, zero sides, huge
    shapes, feature containers with image fields): the writer refuses with ValueError or the parser reads back
    exactly what was written."""
    import math

    from codec import bitstream

    buf = data.ljust(64, b"\0")
    kind = ("image", "feature")[buf[0] & 1]
    name = buf[40 : 40 + buf[1] % 70].decode("latin-1")
    digest = buf[8 : 8 + (8 if buf[2] % 4 else buf[2] % 12)]
    (quality,) = struct.unpack("<f", buf[16:20])
    shapes = [tuple((1 + buf[24 + i]) ** (1 + buf[3] % 4) for _ in range(buf[28 + i] % 8)) for i in range(buf[4] % 10)]
    sections = [buf[: buf[32 + i] % 9] for i in range(buf[5] % 18)]
    geometry = {"quality": quality, "height": int.from_bytes(buf[20:22], "little"),
                "width": int.from_bytes(buf[22:24], "little"), "channels": buf[6] % 5, "bit_depth": buf[7] % 17,
                "shapes": shapes}
    if kind == "feature" and buf[0] & 2:  # a well-formed feature container: geometry implied, a count
        geometry = {**bitstream.FEATURE_DEFAULTS, **bitstream.FEATURE_DERIVED}
    container = bitstream.Container(kind, name, digest, **geometry, sections=sections,
                                    count=int.from_bytes(buf[20:23], "little") % 70000)
    try:
        written = bitstream.write(container)
    except ValueError:
        return
    if container.header_bytes != len(written) - sum(map(len, sections)):
        raise Disagreement("header size does not add up")
    parsed = bitstream.parse(written, max_pixels=1 << 64)
    if kind == "image":
        parsed.count = container.count  # not stored for images
    same_quality = parsed.quality == container.quality or (math.isnan(parsed.quality) and math.isnan(quality))
    if not same_quality or {**vars(parsed), "quality": 0} != {**vars(container), "quality": 0}:
        raise Disagreement("a written container parsed back differently")


def run_roundtrip(data: bytes) -> None:
    if len(data) < 4:
        return
    case, body = data[0] % 5, data[1:]
    if case == 4:
        roundtrip_container(body)
    if case == 0 and len(body) >= 5:
        roundtrip_symbols(body)
    elif case == 1:
        roundtrip_escapes(body)
    elif case == 2:
        roundtrip_image(body)
    elif case == 3:
        roundtrip_fresh_model(body)


RUNNERS = {"container": run_container, "entropy": run_entropy, "decode": run_decode, "roundtrip": run_roundtrip}


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
    if target == "roundtrip":
        noise = np.random.default_rng(0)
        seeds.append(bytes([0, 3, 0, 5, 2, 3]) + bytes(range(1, 29)) + noise.bytes(64))
        seeds.append(bytes([0, 2, 1, 40, 1, 1]) + bytes(28) + noise.bytes(64))
        seeds.append(bytes([1]) + np.array([0, -1, 1, 2**31 - 1, -(2**31), 300], "<i4").tobytes())
        for index in range(len(image_models())):
            seeds.append(bytes([2, index, 128, 15, 20]) + noise.bytes(200))
        for index in range(4):
            seeds.append(bytes([3, index, index, 13, 9]) + noise.bytes(100))
        seeds.append(bytes([4, 0, 13, 1, 0, 2, 3, 3, 8]) + noise.bytes(80))  # an image container
        seeds.append(bytes([4, 3, 9, 1, 0, 0, 2]) + noise.bytes(80))  # a feature container
    elif target == "entropy":
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


def coverage_report(corpora: dict[str, Path]) -> dict:
    """Replay the corpora (target -> folder) under coverage.py in a separate process; line coverage of the decode
    surfaces, codec/bitstream.py and codec/entropy/."""
    root = next(iter(corpora.values())).parent
    script = (f"import sys; sys.path.insert(0, {str(ROOT / 'tools')!r}); sys.path.insert(0, {str(ROOT)!r})\n"
              "from pathlib import Path\nimport fuzz_coverage\n"
              f"for target, folder in {({t: str(c) for t, c in corpora.items()})!r}.items():\n"
              "    for path in sorted(Path(folder).iterdir()):\n"
              "        fuzz_coverage.RUNNERS[target](path.read_bytes())\n")
    name = "-".join(corpora)
    data_file = root / f".coverage-{name}"
    replay = root / f"replay-{name}.py"
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

    missing = {name: summary["missing_lines"] for name, summary in files.items()
               if name.startswith(("codec/bitstream.py", "codec/entropy/")) and summary["missing_lines"]}
    return {"corpus_inputs": {target: len(list(folder.iterdir())) for target, folder in corpora.items()},
            "bitstream_percent": percent("codec/bitstream.py"), "entropy_percent": percent("codec/entropy/"),
            "missing_lines": missing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("target", choices=(*TARGETS, "all"), help="all: --coverage-only over every target's corpus")
    parser.add_argument("--seconds", type=int, nargs="+", default=[60],
                        help="campaign length (all: one value per target in the order "
                             f"{' '.join(TARGETS)}, or one for every target)")
    parser.add_argument("--runs", type=int, help="stop after this many inputs instead")
    parser.add_argument("--corpus", type=Path, help="default ~/.cache/codec/fuzz/TARGET (for all: the folder "
                        "holding one corpus folder per target, default ~/.cache/codec/fuzz)")
    parser.add_argument("--timeout", type=int, default=5, help="seconds per input before it counts as a hang")
    parser.add_argument("--rss-limit-mb", type=int, default=2048)
    parser.add_argument("--coverage-only", action="store_true", help="replay the corpus for coverage, no fuzzing")
    parser.add_argument("--seed-only", action="store_true", help=argparse.SUPPRESS)  # (the seeding subprocess)
    parser.add_argument("--report", type=Path, help="write the coverage figures here (JSON)")
    args = parser.parse_args()
    default_root = Path.home() / ".cache" / "codec" / "fuzz"
    if args.target == "all":
        root = args.corpus or default_root
        corpora = {target: root / target for target in TARGETS}
        if not args.coverage_only:
            seconds = args.seconds * len(TARGETS) if len(args.seconds) == 1 else args.seconds
            if len(seconds) != len(TARGETS):
                parser.error(f"--seconds: one value, or one per target ({len(TARGETS)})")
            report = campaign(root, dict(zip(TARGETS, seconds)), args.timeout, args.rss_limit_mb)
            print(json.dumps({key: value for key, value in report.items() if key != "missing_lines"}, indent=1))
            if args.report:
                args.report.write_text(json.dumps(report, indent=1) + "\n")
            sys.exit(0 if not report["findings"] else 1)
    else:
        corpora = {args.target: args.corpus or default_root / args.target}
    for target, corpus in corpora.items():
        if args.seed_only:
            seed_corpus(target, corpus)
            return
        if not corpus.is_dir() or not any(corpus.iterdir()):  # seeds come from another process: the codec modules
            subprocess.run([sys.executable, __file__, target, "--seed-only", "--corpus", str(corpus)], check=True)
            # must first be imported here, under atheris' instrumentation
    if args.coverage_only:
        figures = coverage_report(corpora)
        print(json.dumps({key: value for key, value in figures.items() if key != "missing_lines"}))
        if args.report:
            args.report.write_text(json.dumps(figures, indent=1))
        return
    if len(args.seconds) != 1:
        parser.error("--seconds: one value for one target")
    fuzz(args.target, corpora[args.target], args.seconds[0], args.runs, args.timeout, args.rss_limit_mb)


def campaign(root: Path, seconds: dict[str, int], timeout: int, rss_limit_mb: int) -> dict:
    """Fuzz each target for its seconds in its own process (libFuzzer ends the process), then measure coverage."""
    from tqdm import tqdm

    runs = {}
    for target, length in tqdm(seconds.items(), desc="fuzz targets"):
        before = set(root.glob(f"{target}-*"))
        result = subprocess.run([sys.executable, __file__, target, "--seconds", str(length), "--corpus",
                                 str(root / target), "--timeout", str(timeout), "--rss-limit-mb", str(rss_limit_mb)],
                                capture_output=True, text=True, cwd=ROOT)
        log = result.stdout + result.stderr
        executed = log.split("stat::number_of_executed_units:")[-1].split()[0] if "executed_units" in log else "0"
        runs[target] = {"seconds": length, "executions": int(executed), "exit": result.returncode,
                        "findings": sorted(path.name for path in set(root.glob(f"{target}-*")) - before
                                           if path.suffix != ".dict")}
    report = {"executions": sum(run["executions"] for run in runs.values()), "targets": runs,
              "findings": [name for run in runs.values() for name in run["findings"]]}
    return {**report, **coverage_report({target: root / target for target in seconds})}


if __name__ == "__main__":
    main()
