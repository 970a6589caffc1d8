"""The `codec` command: encode, decode, info, models, eval, bench, demo, serve, infer."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import tempfile
import time
import warnings
from pathlib import Path

from codec import bitstream
from codec.errors import CodecError
from codec.zoo import DEFAULT_IMAGE_MODEL

SAMPLE_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


def _model_names(kind: str) -> list[str]:
    """Shipped models of one kind, from their cards (no torch import)."""
    from codec.zoo import model_cards

    try:
        return [card.name for card in model_cards().values() if card.kind == kind]
    except (OSError, ValueError, KeyError):
        return []


def _image_model_names() -> list[str]:
    return _model_names("image") or ["none shipped"]


def _feature_model_names() -> list[str]:
    return _model_names("feature") or ["none shipped"]


FORMAT_SUFFIXES = {"PNG": ".png", "BMP": ".bmp", "TIFF": ".tiff", "PPM": ".ppm", "JPEG": ".jpg", "WEBP": ".webp",
                   "AVIF": ".avif"}


def _output_plan(inputs: list[Path], output: Path | None, out_dir: Path | None, suffix: str) -> list[tuple[Path, Path]]:
    """(input, output) pairs: one input with -o, or any number with --out-dir (DIR/<input name><suffix>, the folder
    made if missing); two inputs that would write the same file are refused before any work."""
    if output is not None and out_dir is not None:
        raise CodecError("give either -o/--output or --out-dir, not both")
    if out_dir is None:
        if output is None:
            raise CodecError("say where to write: -o FILE (one input) or --out-dir DIR")
        if len(inputs) > 1:
            raise CodecError(f"{len(inputs)} inputs need --out-dir DIR (-o names one output file)")
        return [(inputs[0], output)]
    if out_dir.exists() and not out_dir.is_dir():
        raise CodecError(f"{out_dir}: not a directory")
    pairs = [(source, out_dir / (source.stem + suffix)) for source in inputs]
    seen: dict[Path, Path] = {}
    for source, target in pairs:
        if target in seen:
            raise CodecError(f"{seen[target]} and {source} would both be written to {target}")
        seen[target] = source
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CodecError(f"cannot make {out_dir}: {error.strerror or error}") from None
    return pairs


def _for_each(pairs: list[tuple[Path, Path]], work, verb: str) -> None:
    """Run work(input, output) for each pair; with several, a file's error is printed and the rest go on, and the
    command fails at the end if any did (outputs are written whole or not at all, so a failure leaves nothing)."""
    if len(pairs) == 1:
        work(*pairs[0])
        return
    started, failed = time.perf_counter(), 0
    for source, target in pairs:
        try:
            work(source, target)
        except CodecError as error:
            failed += 1
            print(f"codec: error: {error}", file=sys.stderr, flush=True)
    print(f"{len(pairs) - failed} of {len(pairs)} files {verb} in {time.perf_counter() - started:.2f} s")
    if failed:
        raise CodecError(f"{failed} of {len(pairs)} files not {verb} (see above)")


def _encode(args: argparse.Namespace) -> None:
    if args.refine and (args.target_bpp is not None or args.target_psnr is not None):
        raise CodecError("--refine cannot be combined with --target-bpp / --target-psnr")
    _for_each(_output_plan(args.input, args.output, args.out_dir, ".bin"), lambda source, target:
              _encode_one(source, target, args), "encoded")


def _encode_one(source: Path, output: Path, args: argparse.Namespace) -> None:
    from codec.api import encode_image
    from codec.imageio import check_output, load_image, write_atomically

    check_output(output, args.force, inputs=(source,))
    started = time.perf_counter()
    loaded = load_image(source, args.max_pixels)
    if args.target_bpp is not None or args.target_psnr is not None:
        from codec.ratecontrol import encode_to_target

        result = encode_to_target(loaded, args.model, args.target_bpp, args.target_psnr)
        data = result.data
        target = f"bpp <= {args.target_bpp:g}" if args.target_bpp is not None else f"PSNR >= {args.target_psnr:g} dB"
        achieved = f"{result.bpp:.4f} bpp" + (f", {result.psnr:.2f} dB" if result.psnr is not None else "")
        status = "met" if result.met else "NOT met (closest quality used)"
        print(f"target {target}: {status} at quality {result.quality:.4f} ({achieved})")
    else:
        data = encode_image(loaded, model=args.model, quality=args.quality, refine_steps=args.refine,
                            progress=args.refine > 0)
    write_atomically(output, data)
    height, width = loaded.pixels.shape[-2:]
    print(f"{output}: {len(data)} bytes, {len(data) * 8 / (height * width):.4f} bpp, "
          f"{time.perf_counter() - started:.2f} s", flush=True)


def _decode(args: argparse.Namespace) -> None:
    requested = args.format.upper() if args.format else None
    if args.out_dir is not None and requested is not None and requested not in FORMAT_SUFFIXES:
        raise CodecError(f"unknown output format {args.format!r}; one of {', '.join(FORMAT_SUFFIXES)}")
    suffix = FORMAT_SUFFIXES[requested or "PNG"]
    _for_each(_output_plan(args.input, args.output, args.out_dir, suffix), lambda source, target:
              _decode_one(source, target, args), "decoded")


def _decode_one(source: Path, output: Path, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    data = _read(source)
    bitstream.parse(data, max_pixels=args.max_pixels)  # a damaged file or an oversized claim fails before torch loads

    from codec.api import decode_image
    from codec.imageio import check_output, image_bytes, output_format, write_atomically

    check_output(output, args.force, inputs=(source,))
    image_format = output_format(output, args.format)  # before any work: an unknown format fails first
    image = decode_image(data, max_pixels=args.max_pixels)
    write_atomically(output, image_bytes(image, output, image_format))
    print(f"{output}: {image.width}x{image.height} {image.mode}, {time.perf_counter() - started:.2f} s", flush=True)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CodecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CodecError(f"{path}: is a directory") from None
    except OSError as error:
        raise CodecError(f"{path}: cannot read ({error.strerror})") from None


def _info(args: argparse.Namespace) -> None:
    data = _read(args.input)
    container = bitstream.parse(data, max_pixels=args.max_pixels)
    info = {"kind": container.kind, "model": container.model, "weights_digest": container.weights_digest.hex()}
    if container.kind == "image":
        info |= {"quality": round(container.quality, 6), "width": container.width, "height": container.height,
                 "channels": container.channels, "bit_depth": container.bit_depth,
                 "latent_shapes": [list(shape) for shape in container.shapes]}
    else:  # the model, not the container, knows a feature's geometry (version 5)
        info |= {"images": container.count}
    info |= {"section_bytes": [len(section) for section in container.sections],
             "header_bytes": container.header_bytes, "total_bytes": len(data)}
    if container.kind == "image":
        info["bpp"] = len(data) * 8 / (container.width * container.height)
    else:
        info["bytes_per_image"] = len(data) / container.count if container.count else None
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        for key, value in info.items():
            print(f"{key:>15}: {value}")


def _models(args: argparse.Namespace) -> None:
    from codec.zoo import model_cards

    cards = model_cards()
    if not cards:
        print("no shipped models")
    for card in cards.values():
        if card.kind == "feature":
            print(f"{card.name}  ({card.family}, split computing)  {card.summary}")
            continue
        print(f"{card.name}  ({card.family}, quality 0..{len(card.config['lambdas']) - 1}, "
              f"default {card.default_quality:g})  {card.summary}")
        kodak = card.results.get("kodak", {})
        for bpp_value, psnr_value, quality in zip(kodak.get("bpp", []), kodak.get("psnr", []), kodak.get("quality", [])):
            print(f"    kodak  quality {quality:<4g} {bpp_value:.3f} bpp  {psnr_value:.2f} dB")


def _demo(args: argparse.Namespace) -> None:
    """Encode and decode a sample photo with a shipped model; print bpp, PSNR, MS-SSIM and times."""
    from codec.api import decode_image, encode_image, prepared_model
    from codec.imageio import load_image
    from codec.metrics import bpp, ms_ssim, psnr
    from codec.precision import use_bf16

    if not args.image.exists():
        raise CodecError(f"sample image {args.image} not found; pass one with --image")
    loaded = load_image(args.image, bitstream.DEFAULT_MAX_PIXELS)
    from codec.imageio import to_pil

    original = to_pil(loaded.pixels, loaded.channels)
    _, card = prepared_model(args.model)
    quality = card.default_quality if args.quality is None else args.quality
    encode_image(loaded, model=args.model, quality=quality)  # warm-up (first call initialises kernels)
    started = time.perf_counter()
    data = encode_image(loaded, model=args.model, quality=quality)
    encoded = time.perf_counter()
    decoded = decode_image(data)
    finished = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        on_disk = Path(folder) / "sample.bin"
        on_disk.write_bytes(data)
        size = on_disk.stat().st_size
    print(f"image      {args.image} ({original.width}x{original.height})")
    print(f"model      {card.name} quality {quality:g} (bf16 transforms: {'on' if use_bf16() else 'off'})")
    print(f"size       {size} bytes = {bpp(size, original):.4f} bpp (header included)")
    print(f"psnr       {psnr(original, decoded):.2f} dB")
    print(f"ms-ssim    {ms_ssim(original, decoded):.4f}")
    print(f"encode     {encoded - started:.3f} s")
    print(f"decode     {finished - encoded:.3f} s")


def _serve(args: argparse.Namespace) -> None:
    from codec.split.runtime import load_feature_model
    from codec.split.server import serve

    if args.workers < 1 or args.max_bytes < 1 or args.body_timeout <= 0:
        raise CodecError("--workers, --max-bytes and --body-timeout must be positive")
    load_feature_model(args.model)
    _check_port_free(args.host, args.port)
    print(f"serving {args.model} on http://{args.host}:{args.port} ({args.workers} worker(s)); Ctrl-C stops",
          flush=True)
    serve(args.model, args.host, args.port, args.workers, args.max_bytes, args.body_timeout, args.threads)


def _check_port_free(host: str, port: int) -> None:
    """Fail before announcing anything when the address cannot be bound."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        raise CodecError(f"cannot listen on {host}:{port} ({error.strerror or error}); is another server using it?") \
            from None


def _infer(args: argparse.Namespace) -> None:
    """Device side over HTTP: encode the images with the learned encoder, send the bytes, print the answer."""
    from PIL import Image, UnidentifiedImageError

    from codec.split.client import InferenceClient
    from codec.split.runtime import DeviceEncoder

    client = InferenceClient(args.server, timeout=args.timeout)
    model = args.model or client.health()["model"]
    device = DeviceEncoder(model)
    for path in args.images:
        try:
            with Image.open(path) as image:
                image.load()
                started = time.perf_counter()
                data = device.encode(image)
        except (FileNotFoundError, IsADirectoryError):
            raise CodecError(f"{path}: no such image file") from None
        except (UnidentifiedImageError, OSError) as error:
            raise CodecError(f"{path}: cannot read image ({error})") from None
        encoded = time.perf_counter()
        answer = client.infer(data, args.k)
        finished = time.perf_counter()
        best = ", ".join(f"{c['label']} {c['probability']:.3f}" for c in answer["top_k"][0])
        print(f"{path}: {len(data)} bytes sent; encode {1e3 * (encoded - started):.1f} ms, round trip "
              f"{1e3 * (finished - encoded):.1f} ms (server decode {answer['decode_ms']:.1f} ms, tail "
              f"{answer['tail_ms']:.1f} ms): {best}")


def _write_json(path: Path, payload: dict, force: bool) -> None:
    from codec.imageio import check_output, write_atomically

    check_output(path, force)
    write_atomically(path, (json.dumps(payload, indent=2) + "\n").encode())
    print(f"wrote {path}")


def _print_curve(result: dict) -> None:
    metrics = result["results"]
    print(f"{'quality':>8}{'bpp':>9}{'PSNR':>9}{'MS-SSIM':>9}{'enc s':>8}{'dec s':>8}")
    for row in zip(metrics["quality"], metrics["bpp"], metrics["psnr-rgb"], metrics["ms-ssim-rgb"],
                   metrics["encoding_time"], metrics["decoding_time"]):
        print(f"{row[0]:>8g}{row[1]:>9.4f}{row[2]:>9.3f}{row[3]:>9.5f}{row[4]:>8.3f}{row[5]:>8.3f}")


def _eval(args: argparse.Namespace) -> None:
    from codec.api import decode_image, encode_image, prepared_model
    from codec.evaluate import dataset_images, evaluate

    paths = dataset_images(args.dataset)
    model, card = prepared_model(args.model)
    qualities = args.qualities or [float(q) for q in range(int(model.max_quality) + 1)]
    result = evaluate(card.name, f"codec {card.family}, {args.dataset.name}", paths, qualities,
                      lambda image, q: encode_image(image, args.model, q), decode_image, args.per_image)
    _print_curve(result)
    if args.output:
        _write_json(args.output, result, args.force)


def _bench(args: argparse.Namespace) -> None:
    from codec.baselines import BASELINE_QUALITIES, baseline_encoder, decode_bytes
    from codec.evaluate import dataset_images, evaluate

    encoder = baseline_encoder(args.codec)
    paths = dataset_images(args.dataset)
    qualities = args.qualities or list(BASELINE_QUALITIES)
    result = evaluate(args.codec, f"Pillow {args.codec}, {args.dataset.name}", paths, qualities, encoder,
                      decode_bytes, args.per_image)
    _print_curve(result)
    if args.output:
        _write_json(args.output, result, args.force)


def non_negative_int(text: str) -> int:
    """argparse type: an integer >= 0 (argparse turns the error into a usage message and exit status 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="codec", description="Learned image and feature codec.")
    commands = parser.add_subparsers(dest="command", required=True)

    def limit(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--max-pixels", type=int, default=bitstream.DEFAULT_MAX_PIXELS,
                         help="largest image accepted (default %(default)s)")

    encode = commands.add_parser("encode", help="compress images")
    encode.add_argument("input", type=Path, nargs="+", help="image(s) to compress (any format Pillow reads)")
    encode.add_argument("-o", "--output", type=Path, help="container file to write (one input)")
    encode.add_argument("--out-dir", type=Path,
                        help="write each input's container here as NAME.bin (any number of inputs; the model loads "
                             "once)")
    encode.add_argument("--model", default=DEFAULT_IMAGE_MODEL,
                        help=f"image model, one of: {', '.join(_image_model_names())} (default %(default)s)")
    rate = encode.add_mutually_exclusive_group()
    rate.add_argument("--quality", type=float, default=None,
                      help="rate point, 0 (smallest) .. max of the model (`codec models`); continuous for "
                           "gain-unit models, rounded to a level (with a warning) for models with discrete levels")
    rate.add_argument("--target-bpp", type=float, help="best quality whose size is at most this many bits per pixel")
    rate.add_argument("--target-psnr", type=float, help="smallest file whose PSNR reaches this many dB")
    encode.add_argument("--refine", type=non_negative_int, default=0, metavar="STEPS",
                        help="optimize this image's latent for STEPS steps first (about 60: smaller files at the same "
                             "quality, seconds of encoding; the decoder is unchanged; not with --target-*)")
    encode.add_argument("--force", action="store_true", help="overwrite an existing output")
    limit(encode)
    encode.set_defaults(run=_encode)

    decode = commands.add_parser("decode", help="decompress .bin files to images")
    decode.add_argument("input", type=Path, nargs="+", help="container(s) made by `codec encode`")
    decode.add_argument("-o", "--output", type=Path,
                        help="image to write (one input); its extension picks the format (.png keeps the decoded "
                             "pixels exactly)")
    decode.add_argument("--out-dir", type=Path,
                        help="write each input's image here as NAME.png (or the --format's extension)")
    decode.add_argument("--format", help="image format to write whatever the extension (PNG, BMP, TIFF, PPM; JPEG, "
                        "WEBP, AVIF re-encode lossily)")
    decode.add_argument("--force", action="store_true", help="overwrite an existing output")
    limit(decode)
    decode.set_defaults(run=_decode)

    info = commands.add_parser("info", help="print a bitstream's header")
    info.add_argument("input", type=Path, help="container (image or feature)")
    info.add_argument("--json", action="store_true", help="print the header as JSON")
    limit(info)
    info.set_defaults(run=_info)

    models = commands.add_parser("models", help="list shipped models and their measured figures")
    models.set_defaults(run=_models)

    def rd_options(sub: argparse.ArgumentParser, quality_type: type) -> None:
        sub.add_argument("dataset", type=Path, help="folder of images")
        sub.add_argument("--qualities", type=quality_type, nargs="+", help="rate points (default: all levels)")
        sub.add_argument("--per-image", action="store_true", help="also record every image's figures")
        sub.add_argument("-o", "--output", type=Path, help="write the results as CompressAI-format JSON")
        sub.add_argument("--force", action="store_true", help="overwrite an existing output")

    evaluation = commands.add_parser("eval", help="rate-distortion of a shipped model over a folder of images")
    evaluation.add_argument("--model", default=DEFAULT_IMAGE_MODEL,
                            help=f"image model, one of: {', '.join(_image_model_names())} (default %(default)s)")
    rd_options(evaluation, float)
    evaluation.set_defaults(run=_eval)

    bench = commands.add_parser("bench", help="rate-distortion of a classic codec (Pillow) over a folder")
    bench.add_argument("codec", choices=("jpeg", "webp", "avif"), help="Pillow codec to measure")
    rd_options(bench, int)
    bench.set_defaults(run=_bench)

    server = commands.add_parser("serve", help="HTTP inference server for a split-computing model")
    server.add_argument("--model", required=True, help=f"split-computing model: {', '.join(_feature_model_names())}")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    server.add_argument("--port", type=int, default=8000, help="port to listen on (default %(default)s)")
    server.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (model loaded once each)")
    server.add_argument("--max-bytes", type=int, default=1 << 20, help="largest request body accepted")
    server.add_argument("--body-timeout", type=float, default=10.0, help="seconds allowed to receive a body")
    server.add_argument("--threads", type=int, help="torch threads per worker")
    server.set_defaults(run=_serve)

    infer = commands.add_parser("infer", help="device side: encode images, send them to a server, print classes")
    infer.add_argument("images", type=Path, nargs="+",
                       help="images to classify (resized to the model's input size, with a warning)")
    infer.add_argument("--server", required=True, help="e.g. http://127.0.0.1:8000")
    infer.add_argument("--model", help="feature model (default: the one the server runs)")
    infer.add_argument("-k", type=int, default=3, help="classes to show")
    infer.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the server (default %(default)s)")
    infer.set_defaults(run=_infer)

    demo = commands.add_parser("demo", help="encode + decode a sample photo, print bpp / PSNR / time")
    demo.add_argument("--image", type=Path, default=SAMPLE_IMAGE, help="picture to code (default: Kodak kodim23)")
    demo.add_argument("--model", default=DEFAULT_IMAGE_MODEL,
                      help=f"image model, one of: {', '.join(_image_model_names())} (default %(default)s)")
    demo.add_argument("--quality", type=float, default=None, help="rate point (default: the model's default)")
    demo.set_defaults(run=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    def show_warning(message, category, filename, lineno, file=None, line=None) -> None:
        print(f"codec: warning: {message}", file=sys.stderr)

    warnings.showwarning = show_warning
    warnings.filterwarnings("ignore", category=FutureWarning)
    if hasattr(signal, "SIGXFSZ"):  # over a file-size limit: an error message (EFBIG), not a core dump
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        args.run(args)
    except CodecError as error:
        print(f"codec: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("codec: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `codec info x.bin | head -1`: the reader left; say nothing, as other tools do
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # Python's own flush at exit must not fail again
        return 141
    except Exception as error:  # never a traceback for users; CODEC_DEBUG=1 shows it
        if os.environ.get("CODEC_DEBUG"):
            raise
        print(f"codec: internal error: {type(error).__name__}: {error} (set CODEC_DEBUG=1 for details)",
              file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
