#!/usr/bin/env python
"""Accuracy vs bytes per image for split computing on CIFAR-10 (ResNet teacher), plotted and tabled.

    python tools/bench_split.py                 # writes tools/results/split_cifar10.{json,md,png}

Points, on the 1000-image lossless test subset (headline) and on the full 10k test set (a JPEG q75 copy):
- the teacher on raw input (3072 bytes of RGB);
- input compression with JPEG / WebP / AVIF (Pillow, qualities 5..95) and with our image codec, then the teacher
  (on the full set only JPEG and WebP by default: AVIF takes ~10 ms per tiny image);
- the teacher's layer1 feature quantized to 8 bits (min/max per image) without entropy coding;
- each shipped Entropic Student (`kind = feature` cards): container bytes per image (one container per image,
  header included) and the entropy-coded payload alone.
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
from codec.split.data import cifar_split, teacher_path  # noqa: E402
from codec.split.resnet import CifarResNet, load_teacher, normalize  # noqa: E402
from codec.split.runtime import DeviceEncoder, ServerDecoder  # noqa: E402
from codec.split.server import local_server  # noqa: E402
from codec.zoo import model_cards  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
RAW_BYTES = 32 * 32 * 3


def as_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255


@torch.no_grad()
def teacher_accuracy(teacher: CifarResNet, images: np.ndarray, labels: np.ndarray) -> float:
    predictions = [teacher(normalize(as_tensor(images[i : i + 500]))).argmax(1) for i in range(0, len(images), 500)]
    return float((torch.cat(predictions).numpy() == labels).mean())


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
                       "accuracy": teacher_accuracy(teacher, np.stack(decoded), labels)})
    return points


@torch.no_grad()
def quantized_feature(teacher: CifarResNet, images: np.ndarray, labels: np.ndarray) -> dict:
    """The split-point feature as 8-bit integers (per-image min/max, 2 float32 side values), no entropy coding."""
    correct = 0
    for start in range(0, len(images), 500):
        feature = teacher.head(normalize(as_tensor(images[start : start + 500])))
        low = feature.amin(dim=(1, 2, 3), keepdim=True)
        step = (feature.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-8) / 255
        restored = torch.round((feature - low) / step) * step + low
        correct += int((teacher.tail(restored).argmax(1).numpy() == labels[start : start + 500]).sum())
    elements = int(np.prod(feature.shape[1:]))
    return {"bytes": float(elements + 8), "accuracy": correct / len(images)}


def student_point(name: str, images: np.ndarray, labels: np.ndarray) -> dict:
    device, server = DeviceEncoder(name), ServerDecoder(name)
    sizes, payloads, predictions = [], [], []
    for array in tqdm(images, desc=f"student {name}", leave=False):
        data = device.encode(array)
        sizes.append(len(data))
        payloads.append(sum(len(section) for section in bitstream.parse(data).sections))
        predictions.append(int(server.decode(data).argmax(1)))
    return {"model": name, "bytes": float(np.mean(sizes)), "payload_bytes": float(np.mean(payloads)),
            "accuracy": float((np.array(predictions) == labels).mean())}


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


def median_ms(function, inputs: list) -> float:
    for item in inputs[:5]:
        function(item)
    times = []
    for item in inputs:
        started = time.perf_counter()
        function(item)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def speed(name: str, teacher: CifarResNet, images: np.ndarray) -> dict:
    """Side by side at batch 1 on one thread: device encode (encoder + entropy coding + container) vs the teacher."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    device, server = DeviceEncoder(name), ServerDecoder(name)
    singles = [images[i] for i in range(len(images))]
    encoded = [device.encode(image) for image in singles]
    with torch.no_grad():
        teacher_ms = median_ms(lambda image: teacher(normalize(as_tensor(image[None]))), singles)
    result = {
        "threads": 1,
        "device_encode_ms": median_ms(device.encode, singles),
        "teacher_on_device_ms": teacher_ms,
        "server_decode_and_tail_ms": median_ms(server.decode, encoded),
        "encoder_parameters": sum(p.numel() for p in device.model.encoder.parameters()),
        "encoder_macs": count_macs(device.model.encoder, torch.zeros(1, 3, 32, 32)),
        "teacher_parameters": sum(p.numel() for p in teacher.parameters()),
        "teacher_macs": count_macs(teacher, torch.zeros(1, 3, 32, 32)),
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


def evaluate_set(label: str, images: np.ndarray, labels: np.ndarray, teacher: CifarResNet, students: list[str],
                 codecs: list[str], own_codec: bool) -> dict:
    result = {"images": len(images), "teacher": {"bytes": float(RAW_BYTES), "accuracy": teacher_accuracy(teacher, images, labels)},
              "input_compression": {}, "quantized_feature_8bit": quantized_feature(teacher, images, labels),
              "students": [student_point(name, images, labels) for name in students]}
    for name in codecs:
        result["input_compression"][name] = input_compression(
            name, baseline_encoder(name), decode_bytes, BASELINE_QUALITIES, images, labels, teacher)
    if own_codec:
        from codec.api import DEFAULT_MODEL, decode_image, encode_image

        result["input_compression"]["ours-" + DEFAULT_MODEL] = input_compression(
            "ours", lambda image, q: encode_image(image, quality=q), decode_image, [0, 1, 2, 3, 4, 5], images,
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


def write_markdown(results: dict, path: Path) -> None:
    lines = ["# Split computing on CIFAR-10: accuracy vs bytes per image", "",
             "Produced by `python tools/bench_split.py`. Bytes are what goes on the wire per image (one container "
             "per image, header included); 'payload' is the entropy-coded part alone.", ""]
    for label, data in results["sets"].items():
        lines += [f"## {label} ({data['images']} images)", "", "| method | bytes/image | top-1 |", "|---|---|---|",
                  f"| teacher, raw input | {data['teacher']['bytes']:.0f} | {data['teacher']['accuracy']:.2%} |",
                  f"| layer1 feature, 8-bit, no entropy coding | {data['quantized_feature_8bit']['bytes']:.0f} | "
                  f"{data['quantized_feature_8bit']['accuracy']:.2%} |"]
        for student in data["students"]:
            ratio = student["byte_ratio_vs_best_input_codec"]
            versus = (f"; best input codec ({student['best_input_codec_at_equal_accuracy']}) needs "
                      f"{student['input_bytes_at_equal_accuracy']:.0f} B = {ratio:.1f}x" if ratio else
                      "; no input codec reaches this accuracy")
            lines.append(f"| {student['model']} (payload {student['payload_bytes']:.0f} B{versus}) | "
                         f"{student['bytes']:.0f} | {student['accuracy']:.2%} |")
        for name, points in data["input_compression"].items():
            for point in points:
                lines.append(f"| {name} q{point['quality']} | {point['bytes']:.0f} | {point['accuracy']:.2%} |")
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
                     marker="^", label="8-bit layer1 feature")
        axis.axhline(100 * data["teacher"]["accuracy"], color="gray", ls="--", label="teacher, raw input")
        axis.set(xscale="log", xlabel="bytes per image", ylabel="top-1 accuracy (%)", title=f"CIFAR-10 {label}")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--codecs", nargs="*", default=["jpeg", "webp", "avif"])
    parser.add_argument("--full-test", type=int, default=10000, help="images of the 10k JPEG test set (0: skip)")
    parser.add_argument("--full-test-codecs", nargs="*", default=["jpeg", "webp"],
                        help="input codecs also run on the full test set (AVIF costs ~10 ms per 32x32 image)")
    parser.add_argument("--requests", type=int, default=200, help="HTTP requests for the latency figure")
    parser.add_argument("--out", type=Path, default=RESULTS / "split_cifar10")
    args = parser.parse_args()
    teacher = load_teacher(teacher_path(args.depth), args.depth)
    students = sorted(card.name for card in model_cards().values()
                      if card.kind == "feature" and card.config.get("depth") == args.depth)
    sets = {"lossless test subset": cifar_split("lossless-test")}
    if args.full_test:
        images, labels = cifar_split("test")
        chosen = np.linspace(0, len(images) - 1, min(args.full_test, len(images))).astype(int)  # sorted by class
        sets["full test set (JPEG q75 copy)"] = (images[chosen], labels[chosen])
    results = {"teacher": f"ResNet-{args.depth}", "sets": {}, "speed": {}, "http": {}}
    for index, (label, (images, labels)) in enumerate(sets.items()):
        codecs = args.codecs if index == 0 else [c for c in args.codecs if c in args.full_test_codecs]
        results["sets"][label] = evaluate_set(label, images, labels, teacher, students, codecs, index == 0)
    speed_images = sets["lossless test subset"][0][:200]
    for name in students:
        results["speed"][name] = speed(name, teacher, speed_images)
        if args.requests:
            results["http"][name] = http_latency(name, sets["lossless test subset"][0][: args.requests])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    write_markdown(results, args.out.with_suffix(".md"))
    plot(results, args.out.with_suffix(".png"))
    print(args.out.with_suffix(".md").read_text())


if __name__ == "__main__":
    main()
