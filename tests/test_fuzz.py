"""Bounded fuzzing (hypothesis): the manifest parser, sources and paths, and ``zoo info``'s reader.
Every exception that escapes is a project error type (``ZooError``; ``ValueError`` for bad input).
Seeds found are kept as ``@example`` regression cases."""

from __future__ import annotations

import json
import posixpath

import onnx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from zoo import hub
from zoo.builder import manifest as mf
from zoo.errors import ManifestError, ZooError
from zoo.hub.external import parse_model
from zoo.hub.inspect import describe

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
                    max_leaves=30)


@FUZZ
@given(st.binary(max_size=2000))
@example(b"[" * 5000)
@example(b'{"schema_version": 1, "models": [{"model": ["x"]}]}')
@example(b'{"a": ' + b"9" * 5000 + b"}")
@example(b'"\\"' * 500)
def test_the_manifest_parser_raises_only_manifest_errors_on_bytes(raw):
    try:
        mf.parse(raw, "fuzz")
    except ManifestError as e:
        assert "\n" not in str(e) and len(str(e)) < 600


def _a_manifest() -> dict:
    sha = "a" * 64
    f = {"path": "m/model.onnx", "bytes": 10, "sha256": sha, "role": "model", "precision": "fp32"}
    entry = {"model": "m", "model_path": "m/model.onnx", "onnx_version": "1", "opset_version": 18,
             "metadata": {"model_sha": sha, "model_bytes": 10, "tags": [], "io_ports": {"inputs": [], "outputs": []}},
             "family": "dense_efficientnet", "flavor": "paper",
             "scaling": {"width": 1.0, "depth": 1.0, "resolution": 224, "dropout": 0.2, "input_dim": 64},
             "num_classes": 10, "params": 1, "flops": 1, "seed": 0, "exporter": "dynamo", "ir_version": 9,
             "files": [f], "test_data": {"batch": 1, "seed": 0, "sets": []}, "parity": [], "latency": []}
    return {"schema_version": 1, "generator": "zoo", "toolchain": dict.fromkeys(
        ["python", "torch", "onnx", "onnxruntime", "onnxscript", "onnx_ir", "numpy", "protobuf"], "1"), "models": [entry]}


def _paths(m):
    yield []
    if isinstance(m, dict):
        for k, v in m.items():
            yield from ([k, *p] for p in _paths(v))
    elif isinstance(m, list):
        for i, v in enumerate(m):
            yield from ([i, *p] for p in _paths(v))


PATHS = list(_paths(_a_manifest()))[1:]


def test_the_seed_manifest_is_valid():
    hub.parse_manifest(json.dumps(_a_manifest()).encode(), "seed")


@FUZZ
@given(st.sampled_from(PATHS), JSON)
@example(["models", 0, "model"], ["unhashable"])
@example(["models", 0, "files", 0, "bytes"], 10 ** 400)
@example(["models", 0, "files", 0, "bytes"], 0)
@example(["models", 0, "files", 0, "path"], "../../x")
def test_a_manifest_with_any_field_replaced_is_valid_or_one_typed_error(path, value):
    m = _a_manifest()
    node = m
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = value
    try:
        raw = json.dumps(m).encode()
    except ValueError:  # NaN and friends: the bytes a server could send instead
        raw = json.dumps(m, allow_nan=True).encode()
    try:
        out = hub.parse_manifest(raw, "fuzz")
    except ZooError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
        return
    for e in out["models"]:  # what passed is safe to use as paths
        for f in e["files"]:
            assert not posixpath.isabs(f["path"]) and ".." not in f["path"].split("/")


@FUZZ
@given(st.text(max_size=80))
@example("http://user:secret@h/")
@example("http://[::1")
@example("http://h:99999/")
@example("file://host/x")
@example("\x00")
def test_sources_are_resolved_or_refused_as_bad_input(spec):
    try:
        src = hub.resolve_source(spec)
    except ValueError as e:
        assert "secret" not in str(e) or "secret" not in spec
        return
    assert src.remote or src.root.is_absolute()
    if src.credentials:
        assert src.credentials[1] not in str(src) or not src.credentials[1]


@FUZZ
@given(st.text(max_size=60))
@example("a/../../b")
@example("a/./b")
@example(".zoo-tmp-x")
def test_a_safe_relpath_stays_inside_its_root(path):
    try:
        p = hub.safe_relpath(path)
    except hub.UnsafePathError:
        return
    assert posixpath.normpath(posixpath.join("/root", p)).startswith("/root/")


def _tiny_model() -> bytes:
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", 2])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["batch", 2])
    w = onnx.numpy_helper.from_array(__import__("numpy").ones(2, "float32"), "w")
    g = onnx.helper.make_graph([onnx.helper.make_node("Add", ["x", "w"], ["y"])], "g", [x], [y], [w])
    m = onnx.helper.make_model(g, opset_imports=[onnx.helper.make_opsetid("", 18)])
    m.ir_version = 9
    m.metadata_props.add(key="k", value="v")
    return m.SerializeToString()


TINY = _tiny_model()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-info")


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(TINY) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(TINY)))
@example([], len(TINY))
@example([], 0)
def test_zoo_info_reads_mutated_models_or_raises_a_typed_error(model_dir, flips, cut_at):
    data = bytearray(TINY[:cut_at])
    for i, b in flips:
        if i < len(data):
            data[i] = b
    p = model_dir / "m.onnx"
    p.write_bytes(bytes(data))
    try:
        info = describe(p)
    except ZooError as e:
        assert "\n" not in str(e)
        return
    assert info["file_bytes"] == len(data) > 0
    parse_model(bytes(data), "again")  # what describe accepted parses


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(TINY) - 1), st.integers(0, 255)), max_size=6),
       st.integers(0, len(TINY)), st.binary(max_size=40))
@example([], len(TINY), b"")
@example([], 0, b"\x3a\xff\xff\xff\xff\x0f")
@example([], len(TINY), b"\x3a\x03\x2a\x01\x6a")  # a graph whose initializer has a field past its end
def test_the_pull_s_streamed_model_walk_reads_mutated_models_or_raises_a_typed_error(flips, cut_at, tail):
    """The download client's wire walk (bounded memory) on mutated models: locations, or a typed
    error; a model onnx parses without external data yields no location."""
    import io

    from zoo.hub.onnxwire import external_locations_in
    from zoo.onnxio import locations

    data = bytearray(TINY[:cut_at])
    for i, b in flips:
        if i < len(data):
            data[i] = b
    data += tail
    try:
        found = external_locations_in(io.BytesIO(bytes(data)), "fuzz")
    except ZooError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
        return
    try:
        ref = locations(onnx.load_model_from_string(bytes(data)))
    except Exception:  # noqa: BLE001 - the walk is a superset check; protobuf may refuse more
        return
    assert sorted(set(found)) == sorted(set(ref))


# -- safetensors headers (zoo build --weights): parsed or one WeightsError, never another exception --

def _safetensors(header: bytes, body: bytes) -> bytes:
    return len(header).to_bytes(8, "little") + header + body


DTYPE = st.sampled_from(["F32", "F64", "F16", "BF16", "I64", "I8", "U8", "BOOL", "F4", "F8_E8M0", "F8_E4M3",
                         "F8_E5M2", "U16", "C64", "", "f32"]) | JSON
TENSOR = st.fixed_dictionaries({"dtype": DTYPE, "shape": st.lists(st.integers(-2, 6), max_size=3) | JSON,
                                "data_offsets": st.lists(st.integers(-1, 40), min_size=2, max_size=2) | JSON})
HEADER = st.dictionaries(st.text(max_size=6), TENSOR | JSON, max_size=4)


@FUZZ
@given(HEADER, st.binary(max_size=40))
@example({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}, b"\x7f\x7f")
@example({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, None]}}, b"\0" * 4)
@example({"w": {"dtype": "F32", "shape": [1], "data_offsets": "ab"}}, b"\0" * 4)
@example({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\0\0\xc0\x7f")  # NaN
@example({"__metadata__": {"a": 1}}, b"")
def test_a_safetensors_header_is_read_or_refused_with_one_weights_error(header, body):
    from zoo.errors import WeightsError
    from zoo.model.weights import parse_state

    raw = _safetensors(json.dumps(header).encode(), body)
    try:
        state = parse_state(raw, "fuzz.safetensors")
    except WeightsError as e:
        assert "\n" not in str(e) and len(str(e)) < 600
        return
    assert all(bool(t.isfinite().all()) for t in state.values() if t.is_floating_point())


@FUZZ
@given(st.binary(max_size=300))
@example(b"{" + b'"a":[' * 3000)
@example(b'{"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}')
def test_safetensors_header_bytes_are_read_or_refused_with_one_weights_error(header):
    from zoo.errors import WeightsError
    from zoo.model.weights import parse_state

    try:
        parse_state(_safetensors(header, b"\0" * 4), "fuzz.safetensors")
    except WeightsError as e:
        assert "\n" not in str(e)


# --------------------------------------------------------------------------------------------------
# Issue 32: the lockfile reader, the trust store's reader and the OCI manifest parser

def _a_lock() -> dict:
    return {"lock_version": 1, "source": "https://example.org/zoo", "models": {"dense_b0": {
        "version": 2, "digest": "sha256:" + "a" * 64, "license": None,
        "files": [{"path": "dense_b0/model.onnx", "bytes": 10, "sha256": "b" * 64}]}}}


LOCK_PATHS = [p for p in _paths(_a_lock())]


@FUZZ
@given(st.one_of(st.binary(max_size=600), st.builds(lambda p, v: (p, v), st.sampled_from(LOCK_PATHS), JSON)))
@example(b"[" * 5000)
@example((["models", "dense_b0", "files"], {"path": "x"}))
@example((["models", "dense_b0"], "x"))
def test_the_lockfile_reader_reads_or_refuses_in_one_typed_line(tmp_path_factory, case):
    from zoo.hub.lockfile import LOCK_VERSION, read_lock

    if isinstance(case, bytes):
        raw = case
    else:
        lock = _a_lock()
        assert lock["lock_version"] == LOCK_VERSION
        path, value = case
        if path:
            target = lock
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = value
        else:
            lock = value
        raw = json.dumps(lock).encode()
    p = tmp_path_factory.mktemp("lock") / "zoo.lock"
    p.write_bytes(raw)
    try:
        lock = read_lock(p)
    except (ValueError, ZooError) as e:  # InputError (bad input), UnsafePathError (a path that leads outside)
        assert "\n" not in str(e)
        return
    assert lock["lock_version"] == 1 and isinstance(lock["models"], dict) and lock["models"]


@FUZZ
@given(st.one_of(st.binary(max_size=600), JSON.map(lambda v: json.dumps({"sources": v}).encode()),
                 JSON.map(lambda v: json.dumps(v).encode())))
@example(b"[" * 5000)
@example(b'{"sources": {"x": 1}}')
def test_the_trust_store_reader_reads_or_refuses_in_one_line(tmp_path_factory, monkeypatch, raw):
    """trust.json as read (``trust._load``): a typed store (every entry checked), or one
    TrustStoreError line (a damaged store is a failure, exit 1: never "no trust")."""
    from zoo.hub import trust

    config = tmp_path_factory.mktemp("config")
    (config / trust.TRUST_FILE).write_bytes(raw)
    monkeypatch.setenv(trust.CONFIG_ENV, str(config))
    try:
        data = trust._load()
    except trust.TrustStoreError as e:
        assert "\n" not in str(e) and len(str(e)) < 700 and "trust store" in str(e)
        return
    assert isinstance(data, dict) and isinstance(data["sources"], dict) and isinstance(data["require"], bool)
    assert all(isinstance(v, dict) and v["kind"] in ("root", "key") for v in data["sources"].values())


def _an_oci_manifest() -> dict:
    return {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "layers": [{"mediaType": "application/json", "digest": "sha256:" + "c" * 64, "size": 10,
                        "annotations": {"org.opencontainers.image.title": "manifest.json"}}]}


OCI_PATHS = [p for p in _paths(_an_oci_manifest())]


@FUZZ
@given(st.one_of(st.binary(max_size=600), st.builds(lambda p, v: (p, v), st.sampled_from(OCI_PATHS), JSON)))
@example(b"[" * 100_000)
@example((["layers", 0, "annotations", "org.opencontainers.image.title"], "../../x"))
@example((["layers", 0, "size"], True))
def test_the_oci_manifest_parser_reads_or_refuses_in_one_typed_line(case):
    from zoo.hub.ociregistry import parse_oci_manifest

    if isinstance(case, bytes):
        raw = case
    else:
        m = _an_oci_manifest()
        path, value = case
        if path:
            target = m
            for k in path[:-1]:
                target = target[k]
            target[path[-1]] = value
        else:
            m = value
        raw = json.dumps(m).encode()
    try:
        layers = parse_oci_manifest(raw, "oci://fuzz/zoo/m")
    except ZooError as e:  # ManifestError, IntegrityError, UnsafePathError
        assert "\n" not in str(e) and len(str(e)) < 600
        return
    for path, layer in layers.items():
        assert not path.startswith("/") and ".." not in path.split("/")
        assert isinstance(layer["size"], int) and not isinstance(layer["size"], bool) and layer["size"] >= 0
