"""The `codec` command as a user meets it: round trips, image modes, one-line errors, no lost or partial files."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.cli import main
from codec.metrics import psnr

pytestmark = pytest.mark.usefixtures("shipped_model_name")


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    rows, cols = np.mgrid[0:72, 0:100]
    array = np.stack([128 + 90 * np.sin(rows / 11), 128 + 90 * np.cos(cols / 13), 60 + rows + cols], axis=2)
    array = array.astype(np.uint8)
    path = tmp_path / "in.png"
    Image.fromarray(array).save(path)
    return path


def _run(*args: str) -> int:
    return main([str(arg) for arg in args])


def test_encode_decode_round_trip_reports_file_size(picture, tmp_path, capsys):
    out_bin, out_png = tmp_path / "x.bin", tmp_path / "x.png"
    assert _run("encode", picture, "-o", out_bin, "--quality", "4") == 0
    reported = capsys.readouterr().out
    size = out_bin.stat().st_size
    assert f"{size} bytes" in reported and f"{size * 8 / (72 * 100):.4f} bpp" in reported
    assert _run("decode", out_bin, "-o", out_png) == 0
    decoded = Image.open(out_png)
    assert decoded.size == (100, 72) and decoded.mode == "RGB"
    assert psnr(Image.open(picture), decoded) > 20


def test_info_json(picture, tmp_path, capsys):
    out_bin = tmp_path / "x.bin"
    _run("encode", picture, "-o", out_bin)
    capsys.readouterr()
    assert _run("info", out_bin, "--json") == 0
    import json

    info = json.loads(capsys.readouterr().out)
    assert info["width"] == 100 and info["height"] == 72 and info["total_bytes"] == out_bin.stat().st_size


def test_existing_output_needs_force(picture, tmp_path, capsys):
    out_bin = tmp_path / "x.bin"
    out_bin.write_bytes(b"keep me")
    assert _run("encode", picture, "-o", out_bin) == 1
    assert "--force" in capsys.readouterr().err
    assert out_bin.read_bytes() == b"keep me"
    assert _run("encode", picture, "-o", out_bin, "--force") == 0
    assert out_bin.read_bytes()[:4] == b"LCDC"


def test_output_never_overwrites_input(picture, capsys):
    before = picture.read_bytes()
    assert _run("encode", picture, "-o", picture, "--force") == 1
    assert picture.read_bytes() == before


@pytest.mark.parametrize(
    "data, message",
    [(b"", "empty file"), (b"garbage" * 20, "bad magic"), (b"LCDC\x01\x01", "truncated")],
)
def test_bad_bitstreams_give_one_line_errors_and_no_output(tmp_path, capsys, data, message):
    bad, out = tmp_path / "bad.bin", tmp_path / "out.png"
    bad.write_bytes(data)
    assert _run("decode", bad, "-o", out) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err
    assert not out.exists() and list(tmp_path.iterdir()) == [bad]


def test_truncated_and_bitflipped_real_files_are_refused(picture, tmp_path, capsys):
    good = tmp_path / "x.bin"
    _run("encode", picture, "-o", good)
    data = good.read_bytes()
    for damaged in (data[: len(data) // 2], data[:-1], data[:40] + bytes([data[40] ^ 4]) + data[41:]):
        (tmp_path / "d.bin").write_bytes(damaged)
        assert _run("decode", tmp_path / "d.bin", "-o", tmp_path / "d.png") == 1
        assert not (tmp_path / "d.png").exists()
    assert "error" in capsys.readouterr().err


def test_wrong_weights_and_unknown_model_are_refused(picture, tmp_path, capsys):
    from codec import bitstream

    good = tmp_path / "x.bin"
    _run("encode", picture, "-o", good)
    container = bitstream.parse(good.read_bytes())
    container.weights_digest = b"\x00" * 8
    (tmp_path / "w.bin").write_bytes(bitstream.write(container))
    assert _run("decode", tmp_path / "w.bin", "-o", tmp_path / "w.png") == 1
    assert "other weights" in capsys.readouterr().err
    container.model = "no-such-model"
    (tmp_path / "u.bin").write_bytes(bitstream.write(container))
    assert _run("decode", tmp_path / "u.bin", "-o", tmp_path / "u.png") == 1
    assert "unknown model" in capsys.readouterr().err
    assert _run("encode", picture, "-o", tmp_path / "v.bin", "--model", "nope") == 1


def test_missing_and_non_image_inputs(tmp_path, capsys):
    assert _run("encode", tmp_path / "missing.png", "-o", tmp_path / "o.bin") == 1
    (tmp_path / "text.png").write_text("not an image")
    assert _run("encode", tmp_path / "text.png", "-o", tmp_path / "o.bin") == 1
    assert _run("encode", tmp_path, "-o", tmp_path / "o.bin") == 1
    assert not (tmp_path / "o.bin").exists()
    assert "Traceback" not in capsys.readouterr().err


def _save(tmp_path: Path, image: Image.Image, name: str) -> Path:
    path = tmp_path / name
    image.save(path)
    return path


def test_image_modes(picture, tmp_path, capsys):
    rgb = Image.open(picture).convert("RGB")
    cases = {
        "gray.png": (rgb.convert("L"), "L", ""),
        "palette.png": (rgb.convert("P"), "RGB", "palette"),
        "opaque.png": (rgb.convert("RGBA"), "RGB", "alpha"),
        "deep.png": (Image.fromarray((np.asarray(rgb.convert("L")).astype(np.uint16) * 257)), "L", "8 bits"),
        "cmyk.jpg": (rgb.convert("CMYK"), "RGB", "CMYK"),
    }
    for name, (image, expected_mode, warning) in cases.items():
        source = _save(tmp_path, image, name)
        assert _run("encode", source, "-o", tmp_path / f"{name}.bin") == 0, name
        assert warning in capsys.readouterr().err
        assert _run("decode", tmp_path / f"{name}.bin", "-o", tmp_path / f"{name}.out.png") == 0
        assert Image.open(tmp_path / f"{name}.out.png").mode == expected_mode, name


def test_transparent_alpha_is_refused_clearly(picture, tmp_path, capsys):
    rgba = Image.open(picture).convert("RGBA")
    rgba.putpixel((0, 0), (1, 2, 3, 0))
    source = _save(tmp_path, rgba, "alpha.png")
    assert _run("encode", source, "-o", tmp_path / "a.bin") == 1
    assert "transparent" in capsys.readouterr().err
    assert not (tmp_path / "a.bin").exists()


def test_pixel_limit(picture, tmp_path, capsys):
    assert _run("encode", picture, "-o", tmp_path / "a.bin", "--max-pixels", "100") == 1
    assert "--max-pixels" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    result = subprocess.run([sys.executable, "-m", "codec", "decode", str(tmp_path / "none.bin"), "-o",
                             str(tmp_path / "o.png")], capture_output=True, text=True)
    assert result.returncode == 1
    assert result.stderr.strip() == f"codec: error: {tmp_path / 'none.bin'}: no such file"


def test_target_bpp_and_psnr_are_met_by_bisection(picture, tmp_path, capsys):
    from codec.imageio import load_image
    from codec.api import encode_image
    from codec.ratecontrol import encode_to_target

    loaded = load_image(picture, 10**6)
    pixels = 72 * 100
    low = len(encode_image(loaded, quality=0.0)) * 8 / pixels
    result = encode_to_target(loaded, "ms-hyperprior", target_bpp=low * 1.5)
    assert result.met and result.bpp <= low * 1.5 and result.quality > 0
    psnr_result = encode_to_target(loaded, "ms-hyperprior", target_psnr=20.0)
    assert psnr_result.met and psnr_result.psnr >= 20.0
    assert _run("encode", picture, "-o", tmp_path / "t.bin", "--target-bpp", str(low * 1.5)) == 0
    out = capsys.readouterr().out
    assert "met at quality" in out
    assert (tmp_path / "t.bin").stat().st_size * 8 / pixels <= low * 1.5


def test_discrete_levels_round_with_a_warning_and_record_the_level(picture, tmp_path, capsys):
    from codec.zoo import model_cards

    if "mgm" not in model_cards():
        pytest.skip("no shipped mgm model")
    out = tmp_path / "m.bin"
    assert _run("encode", picture, "-o", out, "--model", "mgm", "--quality", "1.4") == 0
    assert "quality 1.4 coded as level 1" in capsys.readouterr().err
    assert _run("info", out, "--json") == 0
    import json

    assert json.loads(capsys.readouterr().out)["quality"] == 1.0


def test_target_bpp_on_a_discrete_model_picks_a_level(picture, tmp_path, capsys):
    from codec.imageio import load_image
    from codec.ratecontrol import encode_to_target
    from codec.zoo import model_cards

    if "mgm" not in model_cards():
        pytest.skip("no shipped mgm model")
    loaded = load_image(picture, 10**6)
    sizes = [encode_to_target(loaded, "mgm", target_bpp=1e-9).bpp]  # nothing fits: the smallest level
    result = encode_to_target(loaded, "mgm", target_bpp=100.0)  # everything fits: the top level
    assert result.met and result.quality == 3.0 and sizes[0] < result.bpp


@pytest.mark.parametrize("target", ["--target-bpp=-1", "--target-bpp=0", "--target-psnr=-3"])
def test_out_of_range_targets_are_refused(picture, tmp_path, capsys, target):
    assert _run("encode", picture, "-o", tmp_path / "t.bin", target) == 1
    assert "must be" in capsys.readouterr().err and not (tmp_path / "t.bin").exists()


def test_decode_format_lossy_warns_unknown_is_refused(picture, tmp_path, capsys):
    coded = tmp_path / "x.bin"
    _run("encode", picture, "-o", coded)
    capsys.readouterr()
    assert _run("decode", coded, "-o", tmp_path / "x.jpg") == 0
    assert "re-encodes the decoded image lossily" in capsys.readouterr().err
    assert _run("decode", coded, "-o", tmp_path / "x.unknown") == 1
    assert "cannot tell the image format" in capsys.readouterr().err and not (tmp_path / "x.unknown").exists()
    assert _run("decode", coded, "-o", tmp_path / "noext", "--format", "png") == 0
    assert Image.open(tmp_path / "noext").format == "PNG"


def test_output_that_is_a_directory_is_named_as_such(picture, tmp_path, capsys):
    assert _run("encode", picture, "-o", tmp_path) == 1
    assert "is a directory" in capsys.readouterr().err


def test_closed_pipe_is_silent(picture, tmp_path):
    coded = tmp_path / "x.bin"
    _run("encode", picture, "-o", coded)
    result = subprocess.run(f"{sys.executable} -m codec info {coded} | head -1", shell=True, capture_output=True,
                            text=True)
    assert result.stdout.count("\n") == 1 and result.stderr == ""


def test_help_describes_every_argument():
    from codec.cli import build_parser

    parser = build_parser()
    commands = next(action for action in parser._actions if action.dest == "command")
    for name, sub in commands.choices.items():
        for action in sub._actions:
            assert action.help, f"codec {name} {action.dest}: no help text"


def test_serve_on_a_busy_port_fails_before_announcing(feature_model_name):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "codec", "serve", "--model", feature_model_name, "--port",
                                 str(port)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in result.stderr and "serving" not in result.stdout


def test_feature_inputs_warn_when_resized_or_losing_alpha():
    from codec.split.runtime import image_batch

    with pytest.warns(UserWarning, match="resizing a 40x40 image"):
        assert image_batch(Image.new("RGB", (40, 40)), 32).shape == (1, 3, 32, 32)
    with pytest.warns(UserWarning, match="transparent alpha"):
        image_batch(Image.new("RGBA", (32, 32), (1, 2, 3, 100)), 32)


def test_several_files_code_into_folders_as_one_at_a_time(picture, tmp_path, capsys):
    second = tmp_path / "second.png"
    Image.fromarray(np.asarray(Image.open(picture))[::-1].copy()).save(second)
    coded, decoded = tmp_path / "coded" / "nested", tmp_path / "decoded"
    assert _run("encode", picture, second, "--out-dir", coded, "--quality", "2") == 0
    assert "2 of 2 files encoded" in capsys.readouterr().out
    assert sorted(path.name for path in coded.iterdir()) == ["in.bin", "second.bin"]
    assert _run("encode", second, "-o", tmp_path / "alone.bin", "--quality", "2") == 0
    assert (coded / "second.bin").read_bytes() == (tmp_path / "alone.bin").read_bytes()
    assert _run("decode", *sorted(coded.iterdir()), "--out-dir", decoded) == 0
    assert _run("decode", tmp_path / "alone.bin", "-o", tmp_path / "alone.png") == 0
    assert np.array_equal(np.asarray(Image.open(decoded / "second.png")), np.asarray(Image.open(tmp_path / "alone.png")))
    assert _run("decode", coded / "in.bin", "--out-dir", decoded, "--format", "bmp") == 0
    assert Image.open(decoded / "in.bmp").format == "BMP"


@pytest.mark.parametrize("where, message", [
    (("-o", "x.bin"), "need --out-dir"), ((), "say where to write"), (("-o", "x.bin", "--out-dir", "d"), "not both")])
def test_several_inputs_need_an_output_folder(picture, tmp_path, capsys, where, message):
    arguments = [tmp_path / arg if arg in ("x.bin", "d") else arg for arg in where]
    assert _run("encode", picture, picture, *arguments) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x.bin").exists() and not (tmp_path / "d").exists()


def test_a_failing_file_is_named_and_the_others_are_coded(picture, tmp_path, capsys):
    broken, out = tmp_path / "broken.png", tmp_path / "out"
    broken.write_bytes(b"not an image")
    out.mkdir()
    (out / "kept.bin").write_bytes(b"keep me")
    kept = tmp_path / "kept.png"
    kept.write_bytes(picture.read_bytes())
    assert _run("encode", broken, picture, kept, "--out-dir", out) == 1
    captured = capsys.readouterr()
    assert "broken.png" in captured.err and "--force" in captured.err and "1 of 3 files encoded" in captured.out
    assert "2 of 3 files not encoded" in captured.err
    assert (out / "in.bin").stat().st_size > 0 and (out / "kept.bin").read_bytes() == b"keep me"
    assert not (out / "broken.bin").exists()


def test_two_inputs_with_one_output_name_are_refused_before_any_work(picture, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "in.png").write_bytes(picture.read_bytes())
    assert _run("encode", picture, other / "in.png", "--out-dir", tmp_path / "out") == 1
    assert "would both be written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
