"""Decompression bombs: a few dozen bytes can validly claim a huge image (empty entropy-coded sections are the
honest coding of quantile-0 latents). The decoder must do that work within its limits, and refuse a claim over
--max-pixels before it loads torch or any model (tools/bench_bombs.py measures time and peak RSS up to 2^26 px)."""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from codec import bitstream
from codec.errors import CodecError


@pytest.fixture(scope="module")
def image_models() -> list[str]:
    from codec.zoo import model_cards

    names = sorted(name for name, card in model_cards().items() if card.kind == "image")
    if not names:
        pytest.skip("no shipped image model")
    return names


def test_a_tiny_container_claiming_a_large_image_is_valid_and_decodes(image_models, tmp_path):
    import bench_bombs

    for model in image_models:
        data = bench_bombs.bomb(model, 256)
        container = bitstream.parse(data)
        assert len(data) < 100 and (container.width, container.height) == (256, 256)
        assert all(section == b"" for section in container.sections)
        path = tmp_path / f"{model}.bin"
        path.write_bytes(data)
        result = bench_bombs.decode_measured(path, tmp_path / f"{model}.png")
        assert result["exit"] == 0, result["error"]
        from PIL import Image

        assert Image.open(tmp_path / f"{model}.png").size == (256, 256)


def test_a_claim_over_max_pixels_is_refused_before_torch_loads(image_models, tmp_path):
    import bench_bombs

    path = tmp_path / "bomb.bin"
    path.write_bytes(bench_bombs.bomb(image_models[0], 8192))  # 2^26 pixels: the default limit exactly
    script = ("import sys\nfrom codec.cli import main\n"
              f"code = main(['decode', {str(path)!r}, '-o', {str(tmp_path / 'out.png')!r}, '--max-pixels', '1000000'])\n"
              "print(code, 'torch' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["1", "False"], result.stderr
    assert "8192x8192 = 67108864 pixels exceeds the limit of 1000000 pixels" in result.stderr
    assert not (tmp_path / "out.png").exists()
    one_row_more = dataclasses.replace(bitstream.parse(path.read_bytes()), height=8193)
    with pytest.raises(CodecError, match="exceeds the limit"):
        bitstream.parse(bitstream.serialize(one_row_more))  # the parser's default limit refuses it
