#!/usr/bin/env python
"""Fuzz the decoders with hostile containers: truncated, bit-flipped, spliced, random, and re-sealed ones
(damaged sections or header fields with a valid checksum, which reach the entropy decoders).

    python tools/fuzz_decode.py [--count 100000] [--models ...] [--seconds-per-input 5] [--cli 50]

Seeds come from every shipped model (all families: image containers through `decode_image`, feature containers
through the split-computing server's `ServerDecoder`), and mutations mix them.

Every input must either decode or raise `CodecError`; anything else is a crash, and an input that runs past the
time bound is a hang. Prints counts, the slowest input and the peak RSS. Exit status 1 on any crash or hang.
"""
from __future__ import annotations

import argparse
import random
import resource
import signal
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

warnings.filterwarnings("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import functools  # noqa: E402

from codec import bitstream  # noqa: E402
from codec.api import decode_image, encode_image, prepared_model  # noqa: E402
from codec.errors import CodecError  # noqa: E402
from codec.split.runtime import DeviceEncoder, ServerDecoder  # noqa: E402
from codec.zoo import get_card, model_cards  # noqa: E402

FUZZ_MAX_PIXELS = 1 << 18  # what a server would allow; keeps each input's work bounded


class Hang(Exception):
    pass


def seed_containers(models: list[str], rng: random.Random) -> list[bytes]:
    seeds = []
    for model in models:
        noise = np.random.default_rng(rng.randrange(1 << 30))
        if get_card(model).kind == "feature":
            device = DeviceEncoder(model)
            for batch in (1, 3):
                size = device.input_size
                seeds.append(device.encode(noise.integers(0, 255, (batch, size, size, 3), dtype=np.uint8)))
            continue
        top = prepared_model(model)[0].max_quality
        for height, width, mode in ((32, 48, "RGB"), (70, 90, "RGB"), (64, 64, "L"), (17, 129, "RGB")):
            array = noise.integers(0, 255, (height, width, 3), dtype=np.uint8)
            seeds.append(encode_image(Image.fromarray(array).convert(mode), model, quality=rng.uniform(0, top)))
    return seeds


@functools.lru_cache(maxsize=None)
def server_decoder(model: str) -> ServerDecoder:
    return ServerDecoder(model)


def decode_any(data: bytes, max_pixels: int = FUZZ_MAX_PIXELS) -> None:
    """What a user or a server would run on these bytes: decode_image for images, the server for features."""
    container = bitstream.parse(data, max_pixels=max_pixels)
    if container.kind == "image":
        decode_image(data, max_pixels=max_pixels)
    else:
        server_decoder(container.model).decode(data)


def reseal(container: bitstream.Container) -> bytes:
    return bitstream.serialize(container)  # hostile fields too: the parser must refuse them


def mutate(seeds: list[bytes], rng: random.Random) -> tuple[str, bytes]:
    data = bytearray(rng.choice(seeds))
    kind = rng.choice(["truncate", "bitflip", "splice", "random", "section", "header", "section", "section"])
    if kind == "truncate":
        return kind, bytes(data[: rng.randrange(len(data))])
    if kind == "bitflip":
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            data[position] ^= 1 << rng.randrange(8)
        return kind, bytes(data)
    if kind == "splice":
        other = rng.choice(seeds)
        return kind, bytes(data[: rng.randrange(len(data))] + other[rng.randrange(len(other)) :])
    if kind == "random":
        return kind, bitstream.MAGIC + bytes(rng.getrandbits(8) for _ in range(rng.randrange(200)))
    container = bitstream.parse(bytes(data))
    if kind == "section":
        index = rng.randrange(len(container.sections))
        section = bytearray(container.sections[index])
        action = rng.choice(["flip", "cut", "grow", "replace"])
        if action == "flip" and section:
            for _ in range(rng.randint(1, 16)):
                section[rng.randrange(len(section))] ^= 1 << rng.randrange(8)
        elif action == "cut":
            section = section[: rng.randrange(len(section) + 1)]
        elif action == "grow":
            section += bytes(rng.getrandbits(8) for _ in range(rng.randrange(1, 64)))
        else:
            section = bytearray(rng.getrandbits(8) for _ in range(rng.randrange(0, 2 * len(section) + 8)))
        container.sections[index] = bytes(section)
        return kind, reseal(container)
    field = rng.choice(["quality", "size", "shapes", "count", "channels", "model", "kind"])
    if field == "quality":
        container.quality = rng.choice([-1.0, 1e30, float("nan"), rng.uniform(0, 5), 5.0000001])
    elif field == "size":
        container.height, container.width = rng.randint(1, 600), rng.randint(1, 600)
    elif field == "shapes":
        container.shapes = [tuple(rng.randint(0, 300) for _ in shape) for shape in container.shapes]
    elif field == "count":
        container.count = rng.choice([0, 1, 2, 3, 64, 65, 1 << 16])
    elif field == "channels":
        container.channels = rng.choice([1, 3, 4])
    elif field == "model":
        container.model = rng.choice(["x", "hyperprior", "a" * 64, *model_cards()])
    else:
        container.kind = rng.choice(["feature", "image"])
    try:
        return kind, reseal(container)
    except (ValueError, struct.error, OverflowError):
        return kind, bytes(data)


def on_alarm(signum, frame):
    raise Hang()


def run_api(count: int, models: list[str], seconds: float, seed: int) -> tuple[Counter, list[str], float]:
    rng = random.Random(seed)
    seeds = seed_containers(models, rng)
    outcomes: Counter = Counter()
    crashes: list[str] = []
    slowest = 0.0
    signal.signal(signal.SIGALRM, on_alarm)
    for _ in tqdm(range(count), desc="fuzz decode", mininterval=5):
        kind, data = mutate(seeds, rng)
        started = time.perf_counter()
        signal.setitimer(signal.ITIMER_REAL, seconds)
        try:
            decode_any(data)
            outcomes[f"{kind}: decoded"] += 1
        except CodecError:
            outcomes[f"{kind}: CodecError"] += 1
        except Hang:
            outcomes["HANG"] += 1
            crashes.append(f"hang ({kind}): {data[:64].hex()}")
        except Exception as error:  # noqa: BLE001 - counting crashes is the point
            outcomes["CRASH"] += 1
            crashes.append(f"{type(error).__name__} ({kind}): {error}"[:300])
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        slowest = max(slowest, time.perf_counter() - started)
    return outcomes, crashes, slowest


def run_cli(count: int, models: list[str], seed: int) -> Counter:
    rng = random.Random(seed + 1)
    seeds = seed_containers([m for m in models if get_card(m).kind == "image"], rng)
    outcomes: Counter = Counter()
    with tempfile.TemporaryDirectory() as folder:
        for index in tqdm(range(count), desc="fuzz CLI"):
            _, data = mutate(seeds, rng)
            source, target = Path(folder) / f"{index}.bin", Path(folder) / f"{index}.png"
            source.write_bytes(data)
            result = subprocess.run([sys.executable, "-m", "codec", "decode", str(source), "-o", str(target),
                                     "--max-pixels", str(FUZZ_MAX_PIXELS)], capture_output=True, text=True,
                                    timeout=120)
            one_line = result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
            if result.returncode == 0 and target.exists():
                outcomes["decoded"] += 1
            elif result.returncode == 1 and one_line and not target.exists():
                outcomes["clean error"] += 1
            else:
                outcomes["BAD EXIT"] += 1
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--models", nargs="+", help="models to seed from (default: every shipped model)")
    parser.add_argument("--seconds-per-input", type=float, default=5.0)
    parser.add_argument("--cli", type=int, default=0, help="also run this many inputs through `codec decode`")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    models = args.models or sorted(model_cards())
    outcomes, crashes, slowest = run_api(args.count, models, args.seconds_per_input, args.seed)
    for key, value in sorted(outcomes.items()):
        print(f"{key:>28}: {value}")
    for line in crashes[:20]:
        print("  ", line)
    print(f"models {', '.join(models)}")
    print(f"inputs {args.count}, crashes {outcomes['CRASH']}, hangs {outcomes['HANG']}, slowest {slowest:.2f} s, "
          f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    bad = outcomes["CRASH"] + outcomes["HANG"]
    if args.cli:
        cli = run_cli(args.cli, models, args.seed)
        print("CLI:", dict(cli))
        bad += cli["BAD EXIT"]
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
