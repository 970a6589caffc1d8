"""Files under faults: a process killed while writing, a full disk or a file-size limit, a read-only folder.

The output is always either what it was before or the complete new file, and nothing else is left in its folder.
"""
from __future__ import annotations

import hashlib
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from codec.errors import CodecError
from codec.imageio import write_atomically

ROOT = Path(__file__).resolve().parents[1]
CHUNK = 8 << 20

# Writes two different large contents to out.bin in turn, forever, saying "ready" once the first is in place.
WRITER = f"""
import sys
from pathlib import Path
sys.path.insert(0, {str(ROOT)!r})
from codec.imageio import write_atomically
path = Path(sys.argv[1])
contents = [bytes([1]) * {CHUNK}, bytes([2]) * (2 * {CHUNK})]
write_atomically(path, contents[0])
print("ready", flush=True)
turn = 1
while True:
    write_atomically(path, contents[turn % 2])
    turn += 1
"""


def _leftovers(folder: Path, *expected: str) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name not in expected)


@pytest.mark.parametrize("delay", [0.0, 0.003, 0.011, 0.029, 0.07])
def test_sigkill_while_writing_leaves_the_old_or_the_new_file_and_nothing_else(tmp_path, delay):
    out = tmp_path / "out.bin"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(out)], stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "ready"
        time.sleep(delay)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
    data = out.read_bytes()
    assert data in (bytes([1]) * CHUNK, bytes([2]) * (2 * CHUNK))
    assert _leftovers(tmp_path, "out.bin") == []


@pytest.fixture()
def picture(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path / "in.png"
    Image.fromarray(rng.integers(0, 256, (128, 160, 3), dtype=np.uint8)).save(path)
    return path


def _codec(*args: object, limit_bytes: int | None = None) -> subprocess.Popen:
    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen([sys.executable, "-m", "codec", *map(str, args)], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=limit_file_size if limit_bytes else None,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})


def test_encode_killed_at_any_moment_keeps_the_existing_output(picture, tmp_path, shipped_model_name):
    out = tmp_path / "x.bin"
    out.write_bytes(b"the user's file")
    started = time.perf_counter()
    finished = _codec("encode", picture, "-o", out, "--force", "--model", shipped_model_name)
    finished.communicate(timeout=120)
    runtime = time.perf_counter() - started
    complete = out.read_bytes()
    assert finished.returncode == 0 and complete.startswith(b"LCDC")
    for fraction in (0.3, 0.8, 0.9, 0.95, 1.0):  # kills late in the run land near or in the write
        out.write_bytes(b"the user's file")
        encoder = _codec("encode", picture, "-o", out, "--force", "--model", shipped_model_name)
        time.sleep(fraction * runtime)
        encoder.kill()
        encoder.communicate(timeout=60)
        assert out.read_bytes() in (b"the user's file", complete)
        assert _leftovers(tmp_path, "x.bin", "in.png") == []


@pytest.mark.parametrize("command", ["encode", "decode"])
def test_a_file_size_limit_is_a_clear_error_and_no_partial_file(picture, tmp_path, command, shipped_model_name):
    container = tmp_path / "x.bin"
    source = _codec("encode", picture, "-o", container, "--model", shipped_model_name)
    source.communicate(timeout=120)
    source_file, out = (picture, tmp_path / "y.bin") if command == "encode" else (container, tmp_path / "y.png")
    out.write_bytes(b"keep")
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    limited = _codec(command, source_file, "-o", out, "--force", limit_bytes=4096)
    _, stderr = limited.communicate(timeout=120)
    assert limited.returncode == 1, stderr
    assert f"cannot write {out}: File too large" in stderr and "Traceback" not in stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == digest
    assert _leftovers(tmp_path, "in.png", "x.bin", out.name) == []


def test_full_disk_is_a_clear_error(tmp_path, monkeypatch):
    out = tmp_path / "x.bin"
    out.write_bytes(b"keep")

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)  # the last moment a full disk can show itself
    with pytest.raises(CodecError, match=f"cannot write {out}: No space left on device"):
        write_atomically(out, b"new bytes")
    assert out.read_bytes() == b"keep" and _leftovers(tmp_path, "x.bin") == []


def test_without_unnamed_files_a_named_temporary_is_used_and_cleaned_up(tmp_path, monkeypatch):
    out = tmp_path / "x.bin"
    real_open = os.open

    def no_tmpfile(path, flags, *args, **kwargs):
        if flags & os.O_TMPFILE == os.O_TMPFILE:
            raise OSError(95, "Operation not supported")
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", no_tmpfile)
    write_atomically(out, b"first")
    assert out.read_bytes() == b"first" and _leftovers(tmp_path, "x.bin") == []
    monkeypatch.setattr(os, "fsync", lambda handle: (_ for _ in ()).throw(OSError(28, "No space left on device")))
    with pytest.raises(CodecError, match="No space left on device"):
        write_atomically(out, b"second")
    assert out.read_bytes() == b"first" and _leftovers(tmp_path, "x.bin") == []


def test_new_files_follow_the_umask(tmp_path):
    out = tmp_path / "x.bin"
    previous = os.umask(0o027)
    try:
        write_atomically(out, b"data")
    finally:
        os.umask(previous)
    assert out.stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_a_clear_error(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(CodecError, match="cannot write .*Permission denied"):
            write_atomically(folder / "x.bin", b"data")
    finally:
        folder.chmod(0o755)
