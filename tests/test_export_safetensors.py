"""model.save("m.safetensors") / fastnet.load, and fastnet._safetensors against the
specification and the real safetensors package, both ways; malformed files are a
ValueError naming the file, in bounded memory."""
import io
import json
import os
import struct
import tracemalloc

import numpy as np
import pytest
from _export_models import inputs, random_model
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import fastnet
from fastnet import _safetensors

DTYPES = [np.bool_, np.uint8, np.int8, np.uint16, np.int16, np.float16, np.uint32, np.int32,
          np.float32, np.uint64, np.int64, np.float64]


def assert_same_model(a, b):
    assert a.config() == b.config()
    assert a.weight_names() == b.weight_names()
    for x, y in zip(a.get_weights(), b.get_weights()):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


# ---- the model files ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_save_by_suffix_and_load(tmp_path, batch_norm, dtype):
    model = random_model([7, 12, 9, 3], batch_norm=batch_norm, dtype=dtype, loss="mse",
                         targets_1d=False)
    path = tmp_path / "m.safetensors"
    model.save(path)
    assert path.read_bytes()[8:9] == b"{"
    back = fastnet.load(path)
    assert_same_model(back, model)
    X = inputs(model)
    np.testing.assert_array_equal(back.predict(X), model.predict(X))


def test_format_argument_and_content_dispatch(tmp_path):
    model = random_model([5, 6, 2])
    model.save(tmp_path / "weights.bin", format="safetensors")
    model.save(tmp_path / "model.safetensors", format="npz")     # the content decides
    model.save(tmp_path / "plain")                                  # npz by default
    for name in ("weights.bin", "model.safetensors", "plain"):
        assert_same_model(fastnet.load(tmp_path / name), model)
    assert (tmp_path / "plain").read_bytes()[:2] == b"PK"
    with pytest.raises(ValueError, match="format"):
        model.save(tmp_path / "x", format="h5")


def test_the_safetensors_package_reads_ours_and_we_read_its(tmp_path):
    st_numpy = pytest.importorskip("safetensors.numpy")
    from safetensors import safe_open
    model = random_model([7, 12, 3], dtype="float64")
    path = tmp_path / "m.safetensors"
    model.save(path)
    tensors = st_numpy.load_file(path)
    assert sorted(tensors) == sorted(model.weight_names())
    for name, value in zip(model.weight_names(), model.get_weights()):
        np.testing.assert_array_equal(tensors[name], value)
    with safe_open(path, framework="numpy") as fh:
        metadata = fh.metadata()
    assert json.loads(metadata["config"]) == model.config()
    assert metadata["format"] == "fastnet-model"
    # written by the package: fastnet.load takes it
    theirs = tmp_path / "theirs.safetensors"
    st_numpy.save_file(tensors, theirs, metadata=metadata)
    assert_same_model(fastnet.load(theirs), model)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.dictionaries(
    st.text(min_size=1, max_size=12).filter(lambda s: s != "__metadata__"),
    st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
        dt, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5))),
    max_size=5),
    st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3))
def test_reader_and_writer_against_the_package(tmp_path, tensors, metadata):
    st_numpy = pytest.importorskip("safetensors.numpy")
    ours, theirs = tmp_path / "ours.safetensors", tmp_path / "theirs.safetensors"
    _safetensors.write(ours, tensors, metadata)
    st_numpy.save_file(tensors, theirs, metadata=metadata or None)
    for path in (ours, theirs):
        for reader in (_safetensors.read, lambda p: (st_numpy.load_file(p), None)):
            read, read_metadata = reader(path)
            assert sorted(read) == sorted(tensors)
            for name, value in tensors.items():
                assert read[name].dtype == value.dtype and read[name].shape == value.shape
                np.testing.assert_array_equal(read[name], value)
            if read_metadata is not None:
                assert read_metadata == (metadata if metadata or path == ours else {})
    # every tensor starts 8-byte aligned in our files
    (length,) = struct.unpack("<Q", ours.read_bytes()[:8])
    assert (8 + length) % 8 == 0


# ---- malformed files ----------------------------------------------------------------------

def _file(header, data=b"", length=None, raw_header=None):
    text = raw_header if raw_header is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def _model_file(tmp_path, edit=None):
    """A valid model file's header and data, optionally edited, written back."""
    model = random_model([3, 4, 2])
    path = tmp_path / "m.safetensors"
    model.save(path)
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + length])
    data = raw[8 + length:]
    if edit is not None:
        header, data = edit(header, data) or (header, data)
        path.write_bytes(_file(header, data))
    return path, header, data


def _grow(header, name, shape, dtype="F32"):
    """Add or reshape tensor `name`, keeping the data offsets consistent."""
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    entries[name] = {"dtype": dtype, "shape": shape, "data_offsets": [0, 0]}
    offset, out = 0, {"__metadata__": header["__metadata__"]}
    for key, entry in entries.items():
        size = int(np.prod(entry["shape"])) * {"F32": 4, "F64": 8, "I32": 4}[entry["dtype"]]
        out[key] = dict(entry, data_offsets=[offset, offset + size])
        offset += size
    return out, offset


MALFORMED = {
    "too short": lambda h, d: b"\x01\x00",
    "length past the file": lambda h, d: _file(h, d, length=10**6),
    "length over the cap": lambda h, d: struct.pack("<Q", 2**63) + b"{}" * 10,
    "not utf-8": lambda h, d: _file(None, d, raw_header=b"{\xff\xfe}"),
    "not an object": lambda h, d: _file([1, 2], d),
    "no brace": lambda h, d: _file(None, d, raw_header=b" {}"),
    "not json": lambda h, d: _file(None, d, raw_header=b"{'a': 1}"),
    "duplicate keys": lambda h, d: _file(None, d, raw_header=(
        json.dumps(h)[:-1] + ', "layer0.w": ' + json.dumps(h["layer0.w"]) + "}").encode()),
    "metadata not str": lambda h, d: _file(dict(h, __metadata__={"config": 1}), d),
    "missing key": lambda h, d: _file(dict(h, **{"layer0.w": {"dtype": "F32",
                                                              "shape": [3, 4]}}), d),
    "unknown dtype": lambda h, d: _file(dict(h, **{"layer0.w": dict(h["layer0.w"],
                                                                    dtype="Q7")}), d),
    "negative shape": lambda h, d: _file(dict(h, **{"layer0.w": dict(h["layer0.w"],
                                                                     shape=[-3, -4])}), d),
    "float shape": lambda h, d: _file(dict(h, **{"layer0.w": dict(h["layer0.w"],
                                                                  shape=[3.0, 4])}), d),
    "reversed offsets": lambda h, d: _file(dict(h, **{"layer0.w": dict(
        h["layer0.w"], data_offsets=h["layer0.w"]["data_offsets"][::-1])}), d),
    "offsets past the data": lambda h, d: _file(dict(h, **{"layer0.w": dict(
        h["layer0.w"], data_offsets=[0, 2**40], shape=[2**38])}), d),
    "size and shape disagree": lambda h, d: _file(dict(h, **{"layer0.w": dict(
        h["layer0.w"], shape=[4, 4])}), d),
    "overlap": lambda h, d: _file(dict(h, **{"layer1.b": dict(
        h["layer1.b"], data_offsets=[0, 8])}), d),
    "gap": lambda h, d: _file(      # every tensor 4 bytes later, the first 4 bytes unused
        {k: (dict(v, data_offsets=[v["data_offsets"][0] + 4, v["data_offsets"][1] + 4])
             if k != "__metadata__" else v) for k, v in h.items()}, b"\0" * 4 + d),
    "trailing bytes": lambda h, d: _file(h, d + b"\0" * 4),
    "truncated": lambda h, d: _file(h, d[:-3]),
    "no fastnet metadata": lambda h, d: _file({k: v for k, v in h.items()
                                               if k != "__metadata__"}, d),
    "bad config": lambda h, d: _file(dict(h, __metadata__=dict(h["__metadata__"],
                                                                config="{}")), d),
    "header nested too deeply": lambda h, d: _file(
        None, d, raw_header=b'{"x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"),
    "config nested too deeply": lambda h, d: _file(dict(h, __metadata__=dict(
        h["__metadata__"], config="[" * 100_000 + "]" * 100_000)), d),
    "not a model file": lambda h, d: _file(dict(h, __metadata__=dict(h["__metadata__"],
                                                                      format="other")), d),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_files_are_a_value_error_naming_the_file(tmp_path, case):
    _, header, data = _model_file(tmp_path)
    path = tmp_path / f"{case.replace(' ', '_')}.safetensors"
    path.write_bytes(MALFORMED[case](header, data))
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as info:
            fastnet.load(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(path) in str(info.value)
    assert peak < 1 << 20, f"{case}: {peak} bytes allocated for a {path.stat().st_size}-byte file"


def _set(name, value):
    def edit(header, data):
        model_data = bytearray(data)
        begin, end = header[name]["data_offsets"]
        model_data[begin:end] = np.full((end - begin) // 4, value, dtype="<f4").tobytes()
        return header, bytes(model_data)
    return edit


def _reshape(name, shape):
    def edit(header, data):
        header = dict(header, **{name: dict(header[name], shape=shape)})
        return header, data
    return edit


def _rename(old, new):
    def edit(header, data):
        return {new if k == old else k: v for k, v in header.items()}, data
    return edit


def _as_f64(header, data):
    """Every tensor as F64 (twice the bytes), which the float32 config does not take."""
    values = {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], "<f4")
              for k, v in header.items() if k != "__metadata__"}
    out, offset, parts = {"__metadata__": header["__metadata__"]}, 0, []
    for k, v in values.items():
        out[k] = dict(header[k], dtype="F64", data_offsets=[offset, offset + 8 * v.size])
        offset += 8 * v.size
        parts.append(v.astype("<f8").tobytes())
    return out, b"".join(parts)


@pytest.mark.parametrize("edit,message", [
    (_set("layer0.w", np.nan), "NaN"),
    (_set("layer1.b", np.inf), "NaN or infinity"),
    (_set("layer0.running_var", -0.5), "negative"),
    (_reshape("layer0.w", [4, 3]), r"layer0.w has shape \(4, 3\)"),
    (_rename("layer1.b", "layer1.bias"), "missing"),
    (_as_f64, "the arrays are float64 but the config says 'float32'"),
])
def test_arrays_that_do_not_fit_the_config(tmp_path, edit, message):
    path, _, _ = _model_file(tmp_path, edit)
    with pytest.raises(ValueError, match=message) as info:
        fastnet.load(path)
    assert str(path) in str(info.value)


def test_mixed_dtypes_and_an_extra_array(tmp_path):
    def extra(header, data):
        header, size = _grow(header, "layer9.w", [2])
        return header, data + b"\0" * (size - len(data))
    path, _, _ = _model_file(tmp_path, extra)
    with pytest.raises(ValueError, match="layer9.w"):
        fastnet.load(path)

    def mixed(header, data):
        header, size = _grow(header, "layer1.b", [2], dtype="F64")
        return header, data[:-8] + b"\0" * (size - len(data) + 8)
    path, _, _ = _model_file(tmp_path, mixed)
    with pytest.raises(ValueError, match="mix dtypes"):
        fastnet.load(path)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_corrupted_bytes_never_crash(tmp_path, data):
    """Any byte flipped or the file cut anywhere: a model (the change was in the data and
    kept it finite) or a ValueError, nothing else."""
    _, header, payload = _model_file(tmp_path)
    raw = bytearray(_file(header, payload))
    if data.draw(st.booleans(), label="cut"):
        raw = raw[:data.draw(st.integers(0, len(raw) - 1), label="at")]
    else:
        for _ in range(data.draw(st.integers(1, 4), label="flips")):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= data.draw(st.integers(1, 255))
    path = tmp_path / "fuzz.safetensors"
    path.write_bytes(bytes(raw))
    try:
        model = fastnet.load(path)
    except ValueError as exc:
        assert str(path) in str(exc)
    else:
        assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_load_dispatch_takes_every_kind_of_path(tmp_path):
    model = random_model([3, 4, 2])
    path = tmp_path / "m.safetensors"
    model.save(path)
    for spelling in (path, str(path), os.fsencode(str(path))):
        assert_same_model(fastnet.load(spelling), model)
    assert not _safetensors.looks_like_safetensors(io.BytesIO(path.read_bytes()))
