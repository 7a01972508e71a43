"""Model and checkpoint files from anywhere: ``fastnet.load`` and ``fit(resume=...)`` read
only what they use, check every header against the config before allocating, and turn
every malformed file into ValueError naming it, in memory bounded by the file; ``save``
and checkpoint writes name the caller's path in errors, never share a temporary file
between threads, and clean up after killed writers."""
import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
import tracemalloc
import zipfile

import numpy as np
import pytest
from _privileges import read_only_dir, unprivileged
from conftest import TESTS_DIR, child_env
from hypothesis import given, settings
from hypothesis import strategies as st

import fastnet
from fastnet import _io, _network


@pytest.fixture
def saved(tmp_path):
    """A small batch-norm model (so with running statistics) and its file."""
    rng = np.random.default_rng(0)
    X = rng.standard_normal((64, 4)).astype(np.float32)
    y = (X[:, 0] > 0).astype(np.int64)
    model = fastnet.MLP([4, 8, 2], seed=0)
    model.fit(X, y, epochs=2, batch_size=16, verbose=0)
    path = tmp_path / "model.npz"
    model.save(path)
    return model, path


def members(path):
    with zipfile.ZipFile(path) as zf:
        return {info.filename: zf.read(info) for info in zf.infolist()}


def write_zip(path, contents, compression=zipfile.ZIP_STORED):
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in contents.items():
            zf.writestr(name, data)
    return path


def npy_bytes(arr):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.asarray(arr), allow_pickle=False)
    return buf.getvalue()


def npy_header(shape, descr="<f4", version=(1, 0), pad=0):
    buf = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if pad:                          # a dict literal numpy accepts, padded to a huge length
        text = repr(header)[:-1] + ", " + " " * pad + "}"
        buf.write(np.lib.format.magic(*version))
        encoded = text.encode("latin1")
        length = "<H" if version == (1, 0) else "<I"
        import struct
        buf.write(struct.pack(length, len(encoded)) + encoded)
    else:
        writer = np.lib.format.write_array_header_1_0 if version == (1, 0) else \
            np.lib.format.write_array_header_2_0
        writer(buf, header)
    return buf.getvalue()


def with_meta(path, dst, edit):
    contents = members(path)
    meta = json.loads(np.lib.format.read_array(io.BytesIO(contents["__meta__.npy"])).tobytes())
    edit(meta)
    contents["__meta__.npy"] = npy_bytes(np.frombuffer(json.dumps(meta).encode(), np.uint8))
    return write_zip(dst, contents)


def same_model(a, b):
    return (a.config() == b.config() and a.params.tobytes() == b.params.tobytes()
            and a.buffers.tobytes() == b.buffers.tobytes())


@contextlib.contextmanager
def peak_memory():
    """Yields a list that holds, after the block, the peak bytes Python and NumPy allocated."""
    result = []
    tracemalloc.start()
    try:
        yield result
    finally:
        result.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()


def refused(path, *needles):
    """Load `path`, expecting a ValueError that names the file (and `needles`)."""
    with pytest.raises(ValueError) as info:
        fastnet.load(path)
    message = str(info.value)
    assert str(path) in message, message
    assert "allow_pickle" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


# ---- reading only what is used, before allocating -----------------------------------------

def test_a_zip_bomb_in_an_unused_member_costs_nothing(saved):
    model, path = saved
    bomb = 64 << 20
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED) as zf:
        with zf.open("junk.npy", "w", force_zip64=True) as fh:
            fh.write(npy_header((bomb,), "|u1"))
            zeros = bytes(1 << 20)
            for _ in range(bomb >> 20):
                fh.write(zeros)
    assert path.stat().st_size < bomb // 100
    with peak_memory() as peak:
        loaded = fastnet.load(path)
    assert same_model(loaded, model)
    assert peak[0] < 4 << 20, peak          # never decompressed


def test_config_is_checked_against_the_headers_before_allocating(saved, tmp_path):
    _, path = saved
    bad = with_meta(path, tmp_path / "wide.npz",
                    lambda m: m["config"].__setitem__("layer_sizes", [4, 3_000_000, 2]))
    with peak_memory() as peak:
        refused(bad, "'params'", "(24000002,)")
    assert peak[0] < 4 << 20, peak          # the 96 MB the config implies were never allocated


@pytest.mark.parametrize("shape", [(10**12,), (2**40, 2**40)])
def test_a_header_claiming_a_huge_shape_is_refused_before_allocating(saved, tmp_path, shape):
    _, path = saved
    contents = members(path)
    contents["params.npy"] = npy_header(shape) + b"\0" * 64
    bad = write_zip(tmp_path / "huge.npz", contents)
    with peak_memory() as peak:
        refused(bad, "'params'")
    assert peak[0] < 4 << 20, peak


@pytest.mark.parametrize("version", [(1, 0), (2, 0)])
def test_a_huge_npy_header_is_refused(saved, tmp_path, version):
    _, path = saved
    contents = members(path)
    n = fastnet.load(path).params.size
    contents["params.npy"] = npy_header((n,), pad=60000, version=version) + b"\0" * (4 * n)
    refused(write_zip(tmp_path / "long.npz", contents), "'params'")


@pytest.mark.parametrize("sizes", [[4, 2**63, 2], [2**60, 16], [2**32, 2**32], [4, 10**30]])
def test_absurd_layer_sizes_are_refused_without_overflow(saved, tmp_path, sizes):
    _, path = saved
    bad = with_meta(path, tmp_path / "absurd.npz",
                    lambda m: m["config"].__setitem__("layer_sizes", sizes))
    with peak_memory() as peak:
        refused(bad, "layer_sizes", "parameters")
    assert peak[0] < 4 << 20, peak


@pytest.mark.parametrize("field, value, needle", [
    ("layer_sizes", [4, 8.0, 2], "layer_sizes"),
    ("layer_sizes", [4, True, 2], "layer_sizes"),
    ("layer_sizes", "4,8,2", "layer_sizes"),
    ("batch_norm", "no", "batch_norm"),
    ("dtype", "float16", "dtype"),
    ("dtype", ["float32"], "dtype"),
])
def test_invalid_config_fields_are_refused(saved, tmp_path, field, value, needle):
    _, path = saved
    bad = with_meta(path, tmp_path / "edited.npz", lambda m: m["config"].__setitem__(field, value))
    refused(bad, needle)


def test_metadata_nested_deeply_is_refused(saved, tmp_path):
    _, path = saved
    contents = members(path)
    deep = b"[" * 100000 + b"]" * 100000
    contents["__meta__.npy"] = npy_bytes(np.frombuffer(deep, np.uint8))
    refused(write_zip(tmp_path / "deep.npz", contents), "metadata")


def test_negative_running_variance_is_refused(saved, tmp_path):
    model, path = saved
    running_var = model.layers[0]["running_var"]
    start = running_var.ctypes.data - model.buffers.ctypes.data
    buffers = model.buffers.copy()
    buffers[start // buffers.itemsize] = -1.0
    contents = members(path)
    contents["buffers.npy"] = npy_bytes(buffers)
    refused(write_zip(tmp_path / "negvar.npz", contents), "running_var")


def test_non_native_byte_order_loads_the_same_values(saved, tmp_path):
    model, path = saved
    contents = members(path)
    contents["params.npy"] = npy_bytes(model.params.astype(">f4"))
    loaded = fastnet.load(write_zip(tmp_path / "big_endian.npz", contents))
    assert loaded.params.dtype == np.float32 and loaded.params.dtype.isnative
    assert np.array_equal(loaded.params, model.params)


# ---- other files passed as a model -----------------------------------------------------------

def test_other_kinds_of_file_are_refused_without_pickle_advice(saved, tmp_path):
    model, path = saved
    csv = tmp_path / "data.csv"
    csv.write_text("1,2,0\n3,4,1\n")
    refused(csv, "text file")
    npy = tmp_path / "weights.npy"
    np.save(npy, model.params)
    refused(npy, ".npy")
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    refused(empty)
    refused(tmp_path, "directory")
    np.savez(tmp_path / "plain.npz", params=model.params)
    refused(tmp_path / "plain.npz", "metadata")
    np.savez(tmp_path / "objects.npz", __meta__=np.frombuffer(b"{}", np.uint8),
             params=np.array([None], dtype=object))
    refused(tmp_path / "objects.npz")
    checkpoint = tmp_path / "ck.npz"
    rng = np.random.default_rng(1)
    fastnet.MLP([4, 8, 2]).fit(rng.standard_normal((32, 4)), np.arange(32) % 2, epochs=1,
                              verbose=0, checkpoint=checkpoint)
    refused(checkpoint, "not a fastnet model")
    with pytest.raises(FileNotFoundError):
        fastnet.load(tmp_path / "missing.npz")


def compression_method_offsets(raw):
    """Byte offsets of the compression-method fields of every local and central header."""
    offsets = []
    for signature, field in ((b"PK\x03\x04", 8), (b"PK\x01\x02", 10)):
        start = raw.find(signature)
        while start >= 0:
            offsets += [start + field, start + field + 1]
            start = raw.find(signature, start + 1)
    return offsets


def test_every_single_bit_flip_is_refused_or_harmless(saved, tmp_path):
    """A flip either gives ValueError or loads exactly the saved model (CRCs guard the data);
    never another exception, and never different weights."""
    model, path = saved
    raw = path.read_bytes()
    flips = [(i, i % 8) for i in range(len(raw))]
    flips += [(i, bit) for i in compression_method_offsets(raw) for bit in range(8)]
    target = tmp_path / "flipped.npz"
    outcomes = {"refused": 0, "loaded": 0}
    for i, bit in flips:
        damaged = bytearray(raw)
        damaged[i] ^= 1 << bit
        target.write_bytes(bytes(damaged))
        try:
            loaded = fastnet.load(target)
        except ValueError as exc:
            assert str(target) in str(exc)
            outcomes["refused"] += 1
        else:
            assert same_model(loaded, model), (i, bit)
            outcomes["loaded"] += 1
    assert outcomes["refused"] > len(flips) // 2, outcomes


def test_every_truncation_is_refused(saved, tmp_path):
    _, path = saved
    raw = path.read_bytes()
    target = tmp_path / "cut.npz"
    for n in range(len(raw)):
        target.write_bytes(raw[:n])
        with pytest.raises(ValueError):
            fastnet.load(target)


# ---- checkpoints go through the same reader ------------------------------------------------------

def test_a_damaged_checkpoint_is_refused_before_allocating(tmp_path):
    rng = np.random.default_rng(2)
    X, y = rng.standard_normal((64, 6)).astype(np.float32), np.arange(64) % 3
    path = tmp_path / "ck.npz"
    fastnet.MLP([6, 8, 3], seed=1).fit(X, y, epochs=1, verbose=0, checkpoint=path)
    good = path.read_bytes()
    contents = members(path)
    contents["params.npy"] = npy_header((10**12,)) + b"\0" * 64
    write_zip(path, contents)
    with peak_memory() as peak, pytest.raises(ValueError, match="ck.npz"):
        fastnet.MLP([6, 8, 3], seed=1).fit(X, y, epochs=2, verbose=0, resume=path)
    assert peak[0] < 16 << 20, peak
    damaged = bytearray(good)
    for offset in compression_method_offsets(good)[::2]:
        damaged[offset] = 1                  # "shrunk": a method zipfile cannot read
    path.write_bytes(bytes(damaged))
    with pytest.raises(ValueError, match="ck.npz"):
        fastnet.MLP([6, 8, 3], seed=1).fit(X, y, epochs=2, verbose=0, resume=path)


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=6), batch_norm=st.booleans())
def test_parameter_counts_match_the_native_layout(sizes, batch_norm):
    from fastnet.model import _parameter_counts
    _, n_params, n_buffers = _network.layout(sizes, batch_norm)
    assert _parameter_counts(sizes, batch_norm) == (n_params, n_buffers)


# ---- writing -----------------------------------------------------------------------------------

def no_temp_files(directory):
    return not [f for f in os.listdir(directory) if f.endswith(".tmp")]


def test_save_errors_name_the_path_not_the_temporary_file(tmp_path, monkeypatch):
    model = fastnet.MLP([4, 8, 2])
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError) as info:
        model.save("no/such/dir/model.npz")
    assert info.value.filename == "no/such/dir/model.npz"
    assert ".tmp" not in str(info.value) and "does not exist" in str(info.value)
    (tmp_path / "plain").write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        model.save("plain/model.npz")
    assert info.value.filename == "plain/model.npz" and ".tmp" not in str(info.value)
    with pytest.raises(IsADirectoryError) as info:
        model.save(str(tmp_path))
    assert ".tmp" not in str(info.value)
    assert no_temp_files(tmp_path)


WRITE_INTO_READ_ONLY = """
import sys, fastnet
from fastnet import _io
model = fastnet.MLP([4, 8, 2])
for call in (lambda: model.save(sys.argv[1]), lambda: _io.check_writable(sys.argv[1])):
    try:
        call()
    except PermissionError as exc:
        print(type(exc).__name__, exc.filename, "|", exc)
    else:
        print("written")
"""


def test_a_read_only_directory_is_reported_with_the_path(tmp_path):
    directory = read_only_dir(tmp_path / "ro")
    argv = unprivileged([sys.executable, "-c", WRITE_INTO_READ_ONLY, str(directory / "m.npz")])
    if argv is None:
        pytest.skip("running as root without setpriv: file permissions cannot bind")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                          env=child_env(), cwd=TESTS_DIR, check=False)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 2, proc.stdout
    for line in lines:
        assert line.startswith(f"PermissionError {directory / 'm.npz'} |"), line
        assert ".tmp" not in line
    assert os.listdir(directory) == []


def test_check_writable_finds_problems_before_any_work(tmp_path):
    _io.check_writable(tmp_path / "fine.npz")
    assert os.listdir(tmp_path) == []                      # the probe is gone
    with pytest.raises(FileNotFoundError, match="does not exist"):
        _io.check_writable(tmp_path / "missing" / "ck.npz")
    with pytest.raises(IsADirectoryError):
        _io.check_writable(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        _io.check_writable(tmp_path / "file" / "ck.npz")


def test_fit_refuses_a_checkpoint_in_a_missing_directory_before_training(tmp_path):
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((64, 4)).astype(np.float32), np.arange(64) % 2
    model = fastnet.MLP([4, 8, 2], seed=0)
    before = model.params.copy()
    with pytest.raises(FileNotFoundError, match="does not exist"):
        model.fit(X, y, epochs=2, verbose=0, checkpoint=tmp_path / "missing" / "ck.npz")
    assert np.array_equal(model.params, before)


def test_two_threads_saving_to_one_path_both_succeed(tmp_path):
    models = [fastnet.MLP([4, 16, 2], seed=s) for s in (0, 1)]
    path = tmp_path / "race.npz"
    errors = []

    def save_often(model):
        try:
            for _ in range(150):
                model.save(path)
        except Exception as exc:              # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=save_often, args=(m,)) for m in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[:3]
    loaded = fastnet.load(path)
    assert any(same_model(loaded, m) for m in models)
    assert no_temp_files(tmp_path)


def dead_pid():
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)
    return int(proc.stdout)


def test_a_write_removes_stale_temp_files_of_dead_writers_only(tmp_path):
    model = fastnet.MLP([4, 8, 2])
    stale = [f".m.npz.{dead_pid()}.tmp", f".m.npz.{dead_pid()}.0a1b2c3d4e5f.tmp",
             f".m.npz.{os.getpid()}.ffffffffffff.tmp"]          # ours, but no write is running
    kept = [f".m.npz.{os.getppid()}.0a1b2c3d4e5f.tmp",           # a live writer's
            ".other.npz.1.tmp", ".m.npz.notapid.tmp", "m.npz.1.tmp"]
    for name in stale + kept:
        (tmp_path / name).write_bytes(b"partial")
    model.save(tmp_path / "m.npz")
    assert sorted(os.listdir(tmp_path)) == sorted(kept + ["m.npz"])


KILLED_WRITER = """
import sys, numpy as np
from fastnet import _io
big = np.zeros(8 << 20, np.float32)
while True:
    _io.atomic_savez(sys.argv[1], {"format": "test"}, {"params": big})
"""


def kill_during_a_write(path):
    """SIGKILL a child that writes `path` in a loop, once a temporary file exists."""
    child = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(path)],
                             env=child_env(), cwd=TESTS_DIR)
    try:
        deadline = time.monotonic() + 120
        while no_temp_files(path.parent):
            assert child.poll() is None and time.monotonic() < deadline, "no write started"
            time.sleep(0.001)
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)


def test_temp_files_of_a_killed_write_are_removed_by_the_next_write(tmp_path):
    path = tmp_path / "ck.npz"
    for _ in range(10):                  # the kill may land between two writes: try again
        kill_during_a_write(path)
        if not no_temp_files(tmp_path):
            break
    assert not no_temp_files(tmp_path), "no kill landed during a write"
    fastnet.MLP([4, 8, 2]).save(path)
    assert no_temp_files(tmp_path)
    assert fastnet.load(path).layer_sizes == [4, 8, 2]
