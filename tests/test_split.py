"""Split computing: the teacher, the student's coding path, the device / server API and the HTTP service."""
from __future__ import annotations

import json
import socket
import struct
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from codec import bitstream
from codec.errors import CodecError

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def _images(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (count, 4, 4, 3)).astype(np.uint8)
    return np.repeat(np.repeat(base, 8, axis=1), 8, axis=2)  # blocky 32x32 pictures


def test_teacher_rebuild_matches_published_accuracy():
    if not (SHARED_DATA / "cifar10-teachers").is_dir():
        pytest.skip("../shared/data/cifar10-teachers is absent")
    from split_data import cifar_split, teacher_path
    from codec.split.resnet import load_teacher, normalize

    teacher = load_teacher(teacher_path(20), 20)
    images, labels = cifar_split("lossless-test")
    x = torch.from_numpy(images[:500]).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        accuracy = float((teacher(normalize(x)).argmax(1).numpy() == labels[:500]).mean())
    assert accuracy > 0.88  # SOURCE.md: 91.5 % on all 1000


@pytest.mark.parametrize("prior, stride", [("factorized", 4), ("hyperprior", 4), ("factorized", 8), ("hyperprior", 8)])
def test_untrained_student_decodes_exactly_what_it_trained_on(prior, stride):
    from codec.entropy.streams import LatentStreams
    from codec.split.student import CifarEntropicStudent

    torch.manual_seed(0)
    student = CifarEntropicStudent(latent=8, hidden=16, prior=prior, hyper_channels=4, stride=stride).eval()
    student.update()
    x = torch.from_numpy(_images(3)).permute(0, 3, 1, 2).float() / 255
    streams = student.compress(x)
    side = 32 // stride
    y_shape, z_shape = (3, 8, side, side), (3, 4, side // 2, side // 2)
    assert streams.shapes == ([y_shape] if prior == "factorized" else [y_shape, z_shape])
    assert len(streams.sections) == (2 if prior == "factorized" else 4)
    with pytest.raises(CodecError, match="sections"):
        student.decompress(LatentStreams(streams.sections[:1], streams.shapes), 32, 32)
    logits = student.decompress(LatentStreams(streams.sections, streams.shapes), 32, 32)
    with torch.no_grad():
        expected = student(x)["logits"]  # eval mode: rounding around the medians, as coded
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(CodecError, match="32x32"):
        student.compress(torch.zeros(1, 3, 64, 64))


def test_a_deeper_encoder_started_from_a_shallower_student_computes_the_same():
    import sys

    from codec.split.student import CifarEntropicStudent

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
    from train_split import projection_renamed

    torch.manual_seed(0)
    shallow = CifarEntropicStudent(latent=8, hidden=16).eval()
    deep = CifarEntropicStudent(latent=8, hidden=16, encoder_blocks=2).eval()
    weights = projection_renamed(shallow.state_dict(), deep.state_dict())
    missing = deep.load_state_dict(weights, strict=False).missing_keys
    assert missing and all(key.startswith(("encoder.4.", "encoder.5.")) for key in missing)  # only the new blocks
    x = torch.from_numpy(_images(2)).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad():
        torch.testing.assert_close(deep.analysis(x), shallow.analysis(x))  # the blocks start as the identity


def test_student_refuses_an_unknown_stride():
    from codec.split.student import CifarEntropicStudent

    with pytest.raises(ValueError, match="stride"):
        CifarEntropicStudent(stride=2)


def test_device_and_server_round_trip(feature_model_name):
    from codec.split.runtime import DeviceEncoder, ServerDecoder

    device, server = DeviceEncoder(feature_model_name), ServerDecoder(feature_model_name)
    images = _images(4)
    data = device.encode(images)
    container = bitstream.parse(data)
    assert (container.kind, container.model, container.count) == ("feature", feature_model_name, 4)
    logits = server.decode(data)
    assert logits.shape == (4, 10)
    single = torch.cat([server.decode(device.encode(image)) for image in images])
    torch.testing.assert_close(single, logits, rtol=1e-4, atol=1e-4)  # batch of 4 == 4 containers of 1
    top = server.top_k(logits, 3)
    assert len(top) == 4 and len(top[0]) == 3 and top[0][0]["label"] in server.card.labels


def _as_version_4(data: bytes, shapes: list[tuple[int, ...]], size: int) -> bytes:
    """The same message laid out as version 4 wrote it: height, width and latent shapes, every section length."""
    container = bitstream.parse(data)
    name = container.model.encode()
    body = bitstream.MAGIC + bytes([4, 2, len(name)]) + name + container.weights_digest
    body += bitstream.varint(size) * 2 + bytes([len(shapes)])
    body += b"".join(bytes([len(shape)]) + b"".join(map(bitstream.varint, shape)) for shape in shapes)
    body += bytes([len(container.sections)]) + b"".join(bitstream.varint(len(part)) for part in container.sections)
    body += b"".join(container.sections)
    return body + struct.pack("<I", zlib.crc32(body))


def test_server_still_decodes_version_4_feature_containers(feature_model_name):
    from codec.split.runtime import DeviceEncoder, ServerDecoder

    device, server = DeviceEncoder(feature_model_name), ServerDecoder(feature_model_name)
    data = device.encode(_images(2))
    shapes = device.model.latent_shapes(2, 32, 32)
    old = _as_version_4(data, shapes, 32)
    assert len(old) > len(data) and bitstream.parse(old).count == 2
    torch.testing.assert_close(server.decode(old), server.decode(data), rtol=0, atol=0)
    with pytest.raises(CodecError, match="32x32"):
        server.decode(_as_version_4(data, shapes, 64))


def test_codec_info_describes_a_feature_container(feature_model_name, tmp_path, capsys):
    from codec.cli import main
    from codec.split.runtime import DeviceEncoder

    path = tmp_path / "features.bin"
    path.write_bytes(DeviceEncoder(feature_model_name).encode(_images(3)))
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert (info["kind"], info["images"]) == ("feature", 3)
    assert info["bytes_per_image"] == pytest.approx(path.stat().st_size / 3)


def test_server_refuses_foreign_and_damaged_bytes(feature_model_name, shipped_model_name):
    from PIL import Image

    from codec.api import decode_image, encode_image
    from codec.split.runtime import DeviceEncoder, ServerDecoder

    device, server = DeviceEncoder(feature_model_name), ServerDecoder(feature_model_name)
    data = device.encode(_images(1))
    container = bitstream.parse(data)
    container.weights_digest = bytes(8)
    with pytest.raises(CodecError, match="another encoder"):
        server.decode(bitstream.write(container))
    with pytest.raises(CodecError, match="checksum|truncated|corrupt"):
        server.decode(data[:-5] + bytes(5))
    image_bytes = encode_image(Image.new("RGB", (64, 64), (90, 120, 30)), model=shipped_model_name)
    with pytest.raises(CodecError, match="image bitstream"):
        server.decode(image_bytes)
    with pytest.raises(CodecError, match="feature bitstream"):
        decode_image(data)
    with pytest.raises(CodecError, match="not an image codec"):
        encode_image(Image.new("RGB", (32, 32)), model=feature_model_name)
    with pytest.raises(CodecError, match="uint8 images"):
        device.encode(np.zeros((2, 30, 30, 3), np.uint8))


# --- the HTTP service ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def server_url(feature_model_name):
    from codec.split.server import local_server

    options = ("--max-bytes", "4096", "--body-timeout", "1")
    with local_server(feature_model_name, options, startup_timeout=60, env={"OMP_NUM_THREADS": "1"}) as (url, _):
        yield url


def _post(url: str, body: bytes, content_type: str = "application/octet-stream") -> tuple[int, dict]:
    request = urllib.request.Request(url + "/v1/infer?k=2", data=body, headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_inference_and_bad_requests(server_url, feature_model_name):
    from codec.split.client import InferenceClient
    from codec.split.runtime import DeviceEncoder, ServerDecoder

    data = DeviceEncoder(feature_model_name).encode(_images(2))
    answer = InferenceClient(server_url).infer(data, k=2)
    expected = ServerDecoder(feature_model_name).decode(data).argmax(1).tolist()
    assert [row[0]["class"] for row in answer["top_k"]] == expected
    assert answer["bytes"] == len(data) and answer["batch"] == 2 and answer["decode_ms"] >= 0
    assert _post(server_url, b"")[0] == 400
    status, body = _post(server_url, b"LCDC garbage")
    assert status == 400 and "error" in body
    assert _post(server_url, data, "application/json")[0] == 415
    assert _post(server_url, bytes(5000))[0] == 413
    with pytest.raises(CodecError, match="400"):
        InferenceClient(server_url).infer(b"nonsense")


def test_slow_body_times_out_and_server_keeps_serving(server_url, feature_model_name):
    from codec.split.client import InferenceClient

    host, port = server_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as connection:
        connection.sendall(b"POST /v1/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                           b"Content-Length: 100\r\n\r\nLCDC")
        reply = connection.recv(4096).decode(errors="replace")
    assert reply.startswith("HTTP/1.1 408")
    assert InferenceClient(server_url).health()["model"] == feature_model_name


def test_cli_infer_talks_to_the_server(server_url, tmp_path, capsys):
    from PIL import Image

    from codec.cli import main

    picture = tmp_path / "cat.png"
    Image.fromarray(_images(1)[0]).resize((64, 48)).save(picture)
    assert main(["infer", str(picture), "--server", server_url, "-k", "2"]) == 0
    assert "bytes sent" in capsys.readouterr().out
    assert main(["infer", str(tmp_path / "none.png"), "--server", server_url]) == 1
    assert main(["infer", str(picture), "--server", "http://127.0.0.1:9"]) == 1
    assert "cannot reach" in capsys.readouterr().err
