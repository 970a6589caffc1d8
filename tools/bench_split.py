#!/usr/bin/env python
"""Accuracy vs bytes per image for split computing, plotted and tabled.

    python tools/bench_split.py                          # CIFAR-10, ResNet-20: tools/results/split_cifar10.*
    python tools/bench_split.py --teacher efficientnet-lite0   # Imagenette: tools/results/split_imagenette.*

CIFAR-10 sets: the 1000-image lossless test subset (headline) and the full 10k test set (a JPEG q75 copy).
Imagenette sets: the 500 images the teacher never saw (headline) and all 3925 of val (mostly ImageNet-train images,
a reference only); top-1 is 1000-way, "10-way" takes the argmax over the 10 Imagenette classes.
Points:
- the teacher on raw input (bytes of RGB);
- input compression with JPEG / WebP / AVIF (Pillow, qualities 5..95) and with our image codec, then the teacher
  (on the second set only JPEG and WebP by default);
- the teacher's split-point feature quantized to 8 bits (min/max per image) without entropy coding;
- each shipped Entropic Student (`kind = feature` cards): container bytes per image (one container per image,
  header included), the entropy-coded payload alone, and bytes per image when one container carries 50 images.
Also: device encode vs the whole teacher on the device (ms/image, batch 1, 1 thread, side by side), server
decode + tail ms/image, encoder parameters and MACs, and end-to-end latency over loopback HTTP (`codec serve`).
"""
from __future__ import annotations

import argparse
import io
import json
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codec import bitstream  # noqa: E402
from codec.baselines import BASELINE_QUALITIES, baseline_encoder, decode_bytes  # noqa: E402
from codec.split import efficientnet  # noqa: E402
from split_data import IMAGENETTE_DIR, cifar_split, imagenette_split  # noqa: E402
from split_teachers import CifarTeacher, EfficientNetTeacher, as_float_tensor  # noqa: E402
from codec.split.runtime import DeviceEncoder, ServerDecoder  # noqa: E402
from codec.split.server import local_server  # noqa: E402
from codec.zoo import model_cards  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
BATCH_CONTAINER = 50  # also measured: one container for 50 images (a device that buffers), bytes per image


class CifarBench(CifarTeacher):
    """A CIFAR-10 ResNet teacher and the sets it is measured on."""

    title, chunk = "CIFAR-10", 500
    output = RESULTS / "split_cifar10"

    def sets(self, second_set: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        sets = {"lossless test subset": cifar_split("lossless-test")}
        if second_set:
            images, labels = cifar_split("test")
            chosen = np.linspace(0, len(images) - 1, min(second_set, len(images))).astype(int)  # sorted by class
            sets[set_label("test set (JPEG q75 copy)", len(chosen), len(images))] = (images[chosen], labels[chosen])
        return sets


class ImagenetteBench(EfficientNetTeacher):
    """EfficientNet-Lite0 and the Imagenette sets it is measured on."""

    title, chunk = "Imagenette", 50
    output = RESULTS / "split_imagenette"

    def sets(self, second_set: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        sets = {"500 teacher-unseen images": imagenette_split("unseen")}
        if second_set:
            images, labels = imagenette_split("val", limit=second_set)
            total = len(np.load(IMAGENETTE_DIR / "val.npz")["imagenet_index"])
            sets[set_label("val (mostly ImageNet-train)", len(images), total)] = (images, labels)
        return sets


Teacher = CifarBench | ImagenetteBench


def set_label(name: str, chosen: int, total: int) -> str:
    """"full NAME" or "NAME, k of n spread over the classes": a table never calls a subset the whole set."""
    return f"full {name}" if chosen >= total else f"{name}, {chosen} of {total} spread over the classes"


def add_counts(total: dict[str, int], counts: dict[str, int]) -> dict[str, int]:
    return {key: total.get(key, 0) + value for key, value in counts.items()}


def rates(counts: dict[str, int], images: int) -> dict[str, float]:
    return {key: value / images for key, value in counts.items()}


@torch.no_grad()
def teacher_accuracy(teacher: Teacher, images: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    counts: dict[str, int] = {}
    for i in range(0, len(images), teacher.chunk):
        counts = add_counts(counts, teacher.correct(teacher.logits(as_float_tensor(images[i : i + teacher.chunk])),
                                                    labels[i : i + teacher.chunk]))
    return rates(counts, len(images))


def input_compression(name: str, encode, decode, qualities, images, labels, teacher) -> list[dict]:
    """Compress each image, decode it, classify with the teacher; one point per quality."""
    points = []
    for quality in tqdm(qualities, desc=f"input {name}", leave=False):
        sizes, decoded = [], []
        for array in images:
            data = encode(Image.fromarray(array), quality)
            sizes.append(len(data))
            decoded.append(np.asarray(decode(data).convert("RGB")))
        points.append({"quality": quality, "bytes": float(np.mean(sizes)),
                       **teacher_accuracy(teacher, np.stack(decoded), labels)})
    return points


@torch.no_grad()
def quantized_feature(teacher: Teacher, images: np.ndarray, labels: np.ndarray) -> dict:
    """The split-point feature as 8-bit integers (per-image min/max, 2 float32 side values), no entropy coding."""
    counts: dict[str, int] = {}
    for start in range(0, len(images), teacher.chunk):
        feature = teacher.split_feature(as_float_tensor(images[start : start + teacher.chunk]))
        low = feature.amin(dim=(1, 2, 3), keepdim=True)
        step = (feature.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-8) / 255
        restored = torch.round((feature - low) / step) * step + low
        counts = add_counts(counts, teacher.correct(teacher.tail(restored), labels[start : start + teacher.chunk]))
    elements = int(np.prod(feature.shape[1:]))
    return {"bytes": float(elements + 8), **rates(counts, len(images))}


def student_point(name: str, teacher: Teacher, images: np.ndarray, labels: np.ndarray) -> dict:
    device, server = DeviceEncoder(name), ServerDecoder(name)
    sizes, payloads, logits = [], [], []
    for array in tqdm(images, desc=f"student {name}", leave=False):
        data = device.encode(array)
        sizes.append(len(data))
        payloads.append(sum(len(section) for section in bitstream.parse(data).sections))
        logits.append(server.decode(data))
    batched = [len(device.encode(images[i : i + BATCH_CONTAINER])) for i in range(0, len(images), BATCH_CONTAINER)]
    return {"model": name, "bytes": float(np.mean(sizes)), "payload_bytes": float(np.mean(payloads)),
            f"bytes_in_batches_of_{BATCH_CONTAINER}": float(sum(batched) / len(images)),
            **rates(teacher.correct(torch.cat(logits), labels), len(images))}


def bytes_at_accuracy(points: list[dict], accuracy: float) -> float | None:
    """Fewest bytes at which a curve reaches `accuracy` (linear in log-bytes between its points); None if never."""
    ordered = sorted(points, key=lambda point: point["bytes"])
    for low, high in zip([None, *ordered], ordered):
        if high["accuracy"] >= accuracy:
            if low is None or low["accuracy"] >= accuracy:
                return high["bytes"]
            fraction = (accuracy - low["accuracy"]) / (high["accuracy"] - low["accuracy"])
            return float(np.exp(np.log(low["bytes"]) + fraction * (np.log(high["bytes"]) - np.log(low["bytes"]))))
    return None


def count_macs(module: torch.nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of the convolutions, GDNs and linear layers for one input (batch 1)."""
    from compressai.layers import GDN

    total = 0

    def hook(layer, inputs, output):
        nonlocal total
        if isinstance(layer, torch.nn.ConvTranspose2d):
            total += inputs[0].numel() * layer.out_channels * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, torch.nn.Conv2d):
            total += output.numel() * layer.in_channels // layer.groups * layer.kernel_size[0] * layer.kernel_size[1]
        elif isinstance(layer, torch.nn.Linear):
            total += output.numel() * layer.in_features
        elif isinstance(layer, GDN):
            total += inputs[0].numel() * inputs[0].shape[1]

    handles = [m.register_forward_hook(hook) for m in module.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear, GDN))]
    with torch.no_grad():
        module(x)
    for handle in handles:
        handle.remove()
    return total


class DeviceMacs(torch.nn.Module):
    """What the device runs before entropy coding (for EfficientNet, the teacher's first blocks + the encoder)."""

    def __init__(self, student: torch.nn.Module) -> None:
        super().__init__()
        self.student = student
        self.parts = torch.nn.ModuleList([student.encoder] + (
            [student.teacher._conv_stem, *student.teacher._blocks[: efficientnet.HEAD_BLOCKS]]
            if hasattr(student, "teacher") else []))

    def parameters(self, recurse: bool = True):
        return self.parts.parameters(recurse)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.student.analysis(x)


def median_ms(function, inputs: list) -> float:
    for item in inputs[:5]:
        function(item)
    times = []
    for item in inputs:
        started = time.perf_counter()
        function(item)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def speed(name: str, teacher: Teacher, images: np.ndarray) -> dict:
    """Side by side at batch 1 on one thread: device encode (encoder + entropy coding + container) vs the teacher."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    device, server = DeviceEncoder(name), ServerDecoder(name)
    singles = [images[i] for i in range(len(images))]
    encoded = [device.encode(image) for image in singles]
    with torch.no_grad():
        teacher_ms = median_ms(lambda image: teacher.logits(as_float_tensor(image[None])), singles)
    size = images.shape[1]
    device_part = DeviceMacs(device.model)
    result = {
        "threads": 1,
        "device_encode_ms": median_ms(device.encode, singles),
        "teacher_on_device_ms": teacher_ms,
        "server_decode_and_tail_ms": median_ms(server.decode, encoded),
        "encoder_parameters": sum(p.numel() for p in device_part.parameters()),
        "encoder_macs": count_macs(device_part, torch.zeros(1, 3, size, size)),
        "teacher_parameters": sum(p.numel() for p in teacher.model.parameters()),
        "teacher_macs": count_macs(teacher.model, torch.zeros(1, 3, size, size)),
    }
    torch.set_num_threads(threads)
    result["encode_speedup_vs_teacher"] = result["teacher_on_device_ms"] / result["device_encode_ms"]
    return result


def http_latency(name: str, images: np.ndarray) -> dict:
    """End-to-end over loopback: device encode + POST + server decode/tail + JSON back, sequential requests."""
    from codec.split.client import InferenceClient

    with local_server(name, env={"OMP_NUM_THREADS": "1"}) as (url, _):
        client = InferenceClient(url)
        device = DeviceEncoder(name)
        latencies = []
        for image in images:
            started = time.perf_counter()
            client.infer(device.encode(image), k=1)
            latencies.append(time.perf_counter() - started)
    latencies = np.array(latencies[5:]) * 1e3
    return {"requests": len(latencies), "p50_ms": float(np.percentile(latencies, 50)),
            "p99_ms": float(np.percentile(latencies, 99))}


def evaluate_set(label: str, images: np.ndarray, labels: np.ndarray, teacher: Teacher, students: list[str],
                 codecs: list[str], own_codec: bool, reused_input_compression: dict | None = None) -> dict:
    """Every point on one image set; `reused_input_compression` holds points of an earlier run (then pass no codecs)."""
    result = {"images": len(images), "teacher": {"bytes": float(np.prod(images.shape[1:])),
                                                 **teacher_accuracy(teacher, images, labels)},
              "input_compression": dict(reused_input_compression or {}),
              "quantized_feature_8bit": quantized_feature(teacher, images, labels),
              "students": [student_point(name, teacher, images, labels) for name in students]}
    for name in codecs:
        result["input_compression"][name] = input_compression(
            name, baseline_encoder(name), decode_bytes, BASELINE_QUALITIES, images, labels, teacher)
    if own_codec:
        from codec.api import DEFAULT_MODEL, decode_image, encode_image

        result["input_compression"]["ours-" + DEFAULT_MODEL] = input_compression(
            "ours", lambda image, q: encode_image(image, quality=q), decode_image, list(range(7)), images,
            labels, teacher)
    best = {}
    for student in result["students"]:
        needed = {name: bytes_at_accuracy(points, student["accuracy"])
                  for name, points in result["input_compression"].items()}
        reached = {name: value for name, value in needed.items() if value is not None}
        best_name = min(reached, key=reached.get) if reached else None
        student["best_input_codec_at_equal_accuracy"] = best_name
        student["input_bytes_at_equal_accuracy"] = reached.get(best_name) if best_name else None
        student["byte_ratio_vs_best_input_codec"] = (reached[best_name] / student["bytes"]) if best_name else None
        best[student["model"]] = best_name
    print(f"{label}: teacher {result['teacher']['accuracy']:.4f}", flush=True)
    return result


def accuracy_cells(point: dict) -> str:
    return " | ".join(f"{point[key]:.2%}" for key in ("accuracy", "accuracy_10way") if key in point)


def write_markdown(results: dict, path: Path) -> None:
    ten_way = "accuracy_10way" in next(iter(results["sets"].values()))["teacher"]
    header, rule = ("| method | bytes/image | top-1 | 10-way |", "|---|---|---|---|") if ten_way else \
        ("| method | bytes/image | top-1 |", "|---|---|---|")
    lines = [f"# Split computing on {results['title']} ({results['teacher']} teacher): accuracy vs bytes per image",
             "", f"Produced by `python tools/bench_split.py {results['arguments']}`. Bytes are what goes "
             "on the wire per image (one container per image, header included); 'payload' is the entropy-coded part "
             "alone.", ""]
    if results.get("input_compression_reused_from_earlier_run"):
        lines += ["Input-compression points for " + ", ".join(results["input_compression_reused_from_earlier_run"])
                  + " are those of the previous full run of this script (`--reuse-baselines`: same images, same "
                  "codecs); everything else was measured in this run.", ""]
    for label, data in results["sets"].items():
        feature = data["quantized_feature_8bit"]
        lines += [f"## {label} ({data['images']} images)", "", header, rule,
                  f"| teacher, raw input | {data['teacher']['bytes']:.0f} | {accuracy_cells(data['teacher'])} |",
                  f"| {results['feature_name']} feature, 8-bit, no entropy coding | {feature['bytes']:.0f} | "
                  f"{accuracy_cells(feature)} |"]
        for student in data["students"]:
            ratio = student["byte_ratio_vs_best_input_codec"]
            versus = (f"; best input codec ({student['best_input_codec_at_equal_accuracy']}) needs "
                      f"{student['input_bytes_at_equal_accuracy']:.0f} B = {ratio:.1f}x" if ratio else
                      "; no input codec reaches this accuracy")
            batched = student[f"bytes_in_batches_of_{BATCH_CONTAINER}"]
            lines.append(f"| {student['model']} (payload {student['payload_bytes']:.0f} B, {batched:.0f} B/image in "
                         f"containers of {BATCH_CONTAINER}{versus}) | "
                         f"{student['bytes']:.0f} | {accuracy_cells(student)} |")
        for name, points in data["input_compression"].items():
            for point in points:
                lines.append(f"| {name} q{point['quality']} | {point['bytes']:.0f} | {accuracy_cells(point)} |")
        lines.append("")
    lines += ["## Speed (batch 1, 1 thread, this CPU)", "", "| model | device encode ms | teacher on device ms | "
              "speed-up | server decode+tail ms | encoder params | encoder MMACs | teacher MMACs | HTTP p50 / p99 ms |",
              "|---|---|---|---|---|---|---|---|---|"]
    for name, s in results["speed"].items():
        http = results["http"].get(name, {})
        lines.append(f"| {name} | {s['device_encode_ms']:.2f} | {s['teacher_on_device_ms']:.2f} | "
                     f"{s['encode_speedup_vs_teacher']:.2f}x | {s['server_decode_and_tail_ms']:.2f} | "
                     f"{s['encoder_parameters']} | {s['encoder_macs'] / 1e6:.2f} | {s['teacher_macs'] / 1e6:.2f} | "
                     f"{http.get('p50_ms', float('nan')):.1f} / {http.get('p99_ms', float('nan')):.1f} |")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def plot(results: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = results["sets"]
    figure, axes = plt.subplots(1, len(sets), figsize=(6.5 * len(sets), 4.8), squeeze=False)
    for axis, (label, data) in zip(axes[0], sets.items()):
        for name, points in data["input_compression"].items():
            axis.plot([p["bytes"] for p in points], [100 * p["accuracy"] for p in points], "o-", ms=3, label=name)
        students = sorted(data["students"], key=lambda s: s["bytes"])
        axis.plot([s["bytes"] for s in students], [100 * s["accuracy"] for s in students], "s-", color="black",
                  label="Entropic Student (ours)")
        axis.scatter([data["quantized_feature_8bit"]["bytes"]], [100 * data["quantized_feature_8bit"]["accuracy"]],
                     marker="^", label=f"8-bit {results['feature_name']} feature")
        axis.axhline(100 * data["teacher"]["accuracy"], color="gray", ls="--", label="teacher, raw input")
        axis.set(xscale="log", xlabel="bytes per image", ylabel="top-1 accuracy (%)", title=f"{results['title']} {label}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def reusable_baselines(path: Path, sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, dict]:
    """Input-compression points of an earlier run, per set, where that set had the same number of images."""
    if not path.exists():
        raise SystemExit(f"--reuse-baselines: {path} does not exist; run once without it")
    earlier = json.loads(path.read_text())["sets"]
    return {label: earlier[label]["input_compression"] for label, (images, _) in sets.items()
            if label in earlier and earlier[label]["images"] == len(images) and earlier[label]["input_compression"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="resnet20", help="resnet20/32/44/56 (CIFAR-10) or efficientnet-lite0")
    parser.add_argument("--codecs", nargs="*", default=["jpeg", "webp", "avif"])
    parser.add_argument("--second-set", type=int, default=10000,
                        help="images of the second set, spread over the classes (CIFAR: of the 10k JPEG test set; "
                        "Imagenette: of the 3925 val images; 0: skip)")
    parser.add_argument("--second-set-codecs", nargs="*", default=["jpeg", "webp"],
                        help="input codecs also run on the second set (AVIF costs ~10 ms per 32x32 image)")
    parser.add_argument("--own-codec", action=argparse.BooleanOptionalAction, default=True,
                        help="input compression with our image codec on the first set")
    parser.add_argument("--speed-images", type=int, default=200)
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests for the latency figure")
    parser.add_argument("--out", type=Path, help="output stem (default tools/results/split_<dataset>)")
    parser.add_argument("--reuse-baselines", action="store_true",
                        help="take the input-compression points (JPEG/WebP/AVIF/ours; they depend only on the images, "
                        "Pillow and our image model) from the existing <out>.json instead of recomputing them; "
                        "students, teacher, feature, speed and HTTP are measured anew")
    args = parser.parse_args()
    teacher: Teacher = ImagenetteBench() if args.teacher == "efficientnet-lite0" else CifarBench(int(args.teacher[6:]))
    out = args.out or teacher.output
    students = sorted(card.name for card in model_cards().values() if teacher.is_student(card))
    sets = teacher.sets(args.second_set)
    previous = reusable_baselines(out.with_suffix(".json"), sets) if args.reuse_baselines else {}
    results = {"title": teacher.title, "teacher": teacher.label, "teacher_arg": args.teacher,
               "arguments": " ".join(sys.argv[1:]),
               "feature_name": teacher.feature_name, "sets": {}, "speed": {}, "http": {},
               "input_compression_reused_from_earlier_run": sorted(previous)}
    for index, (label, (images, labels)) in enumerate(sets.items()):
        reused = previous.get(label)
        codecs = [] if reused else args.codecs if index == 0 else [c for c in args.codecs if c in args.second_set_codecs]
        results["sets"][label] = evaluate_set(label, images, labels, teacher, students, codecs,
                                              index == 0 and args.own_codec and not reused, reused)
    first_images = next(iter(sets.values()))[0]
    for name in students:
        results["speed"][name] = speed(name, teacher, first_images[: args.speed_images])
        if args.requests:
            results["http"][name] = http_latency(name, first_images[: args.requests])
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    write_markdown(results, out.with_suffix(".md"))
    plot(results, out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
