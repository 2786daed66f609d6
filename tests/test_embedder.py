"""The embedding backends, run on the real model (no fakes)."""

from __future__ import annotations

import numpy as np
import pytest

from codelearn.errors import CodelearnError
from codelearn.index.embedder import Embedder, descriptor, get_embedder, split_identifier

CODE = {
    "json": '''def raw_decode(self, s, idx=0):
    try:
        obj, end = self.scan_once(s, idx)
    except StopIteration as err:
        raise JSONDecodeError("Expecting value", s, err.value) from None
    return obj, end''',
    "rmtree": '''def rmtree(path, ignore_errors=False):
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            rmtree(entry.path)
        else:
            os.unlink(entry.path)
    os.rmdir(path)''',
    "gcd": '''def gcd(a, b):
    while b:
        a, b = b, a % b
    return abs(a)''',
}


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    return get_embedder("default", threads=1)


def test_shape_dtype_and_unit_rows(embedder: Embedder) -> None:
    assert isinstance(embedder, Embedder)
    assert "@" in embedder.name and embedder.dim == 384 and embedder.max_tokens > 0
    docs = embedder.embed_documents(list(CODE.values()))
    assert docs.shape == (3, embedder.dim) and docs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    q = embedder.embed_query("delete a directory tree")
    assert q.shape == (embedder.dim,) and q.dtype == np.float32
    assert abs(float(np.linalg.norm(q)) - 1.0) < 1e-5
    assert embedder.embed_documents([]).shape == (0, embedder.dim)


@pytest.mark.parametrize("name", ["default", "minilm-fp32"])
def test_order_survives_length_sorted_batching(name: str) -> None:
    embedder = get_embedder(name, threads=2)
    # Lengths deliberately out of order, more texts than one batch holds.
    texts = [("word " * ((i * 37) % 60 + 1)) + str(i) for i in range(300)]
    texts[5] = ""  # an empty text still gets a row
    together = embedder.embed_documents(texts)
    for i in (0, 5, 17, 150, 299):
        alone = embedder.embed_documents([texts[i]])[0]
        assert float(together[i] @ alone) > 0.999, i


@pytest.mark.parametrize("name", ["default", "minilm-fp32"])
def test_query_is_closest_to_its_code(name: str) -> None:
    embedder = get_embedder(name, threads=2)
    names = list(CODE)
    texts = [descriptor("function", n, "", CODE[n], f"lib/{n}.py") for n in names]
    docs = embedder.embed_documents(texts)
    for query, want in [
        ("decode a JSON document from a string", "json"),
        ("recursively delete a directory and its files", "rmtree"),
        ("greatest common divisor of two integers", "gcd"),
    ]:
        sims = docs @ embedder.embed_query(query)
        assert names[int(np.argmax(sims))] == want, (query, sims)


def test_unknown_embedder_names_the_choices() -> None:
    with pytest.raises(CodelearnError) as info:
        get_embedder("nope")
    assert "nope" in str(info.value) and "minilm" in str(info.value) and "default" in str(info.value)


def test_descriptor_recipe() -> None:
    d = descriptor(
        "method",
        "JSONDecoder.raw_decode",
        "class JSONDecoder(object):",
        '    def raw_decode(self, s, idx=0):\n        """Decode a JSON document. More."""\n'
        "        return self.scan_once(s, idx)",
        "json/decoder.py",
    )
    assert d == "decoder: json decoder raw decode: Decode a JSON document.: raw decode(self, s, idx=0): return scan once(s, idx)"
    long = descriptor("function", "f", "", "def f():\n    return " + "x_y " * 500, "a.py", max_chars=100)
    assert len(long) <= 100
    assert descriptor("function", "f", "", "def f(): pass", "pkg/__init__.py").startswith("pkg: f:")
    assert split_identifier("parse_HTTPHeaders2") == ["parse", "http", "headers", "2"]
    assert descriptor("text", "", "", "hello   world", "README") == "hello world"


def _texts() -> list[str]:
    return [descriptor("function", n, "", CODE[n], f"lib/{n}.py") for n in CODE] + list(CODE.values())


def test_int8_vectors_stay_close_to_the_shipped_model_and_never_depend_on_the_batch() -> None:
    int8, fp32 = get_embedder("default", threads=2), get_embedder("minilm-fp32", threads=1)
    assert int8.name != fp32.name  # different vectors, different name: switching re-embeds
    texts = _texts()
    fast, exact = int8.embed_documents(texts), fp32.embed_documents(texts)
    cosines = (fast * exact).sum(axis=1)
    assert cosines.min() > 0.97, cosines
    alone = np.stack([int8.embed_documents([t])[0] for t in texts])
    np.testing.assert_array_equal(fast, alone)  # bit for bit, whatever it was batched with


def test_the_int8_model_is_built_once_with_integer_matmuls(tmp_path) -> None:
    import onnx

    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    MiniLMInt8Embedder(threads=1, cache_dir=tmp_path)
    (built,) = tmp_path.glob("*.onnx")
    ops = {node.op_type for node in onnx.load(str(built)).graph.node}
    assert ops & {"DynamicQuantizeMatMul", "MatMulInteger", "MatMulIntegerToFloat"}, ops
    stamp = built.stat().st_mtime_ns
    MiniLMInt8Embedder(threads=1, cache_dir=tmp_path)
    assert built.stat().st_mtime_ns == stamp and len(list(tmp_path.iterdir())) == 1  # no leftovers


def test_a_failed_int8_build_says_how_to_use_the_shipped_model(tmp_path, monkeypatch) -> None:
    from codelearn.index import onnx_int8
    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    def broken(source, dest):
        raise KeyError("no quantizer for this graph")

    monkeypatch.setattr(onnx_int8, "_quantize", broken)
    with pytest.raises(CodelearnError) as info:
        MiniLMInt8Embedder(threads=1, cache_dir=tmp_path)
    assert 'embedder = "minilm-fp32"' in info.value.fix
    assert list(tmp_path.iterdir()) == []  # nothing half-built left behind


def test_an_unwritable_cache_says_where_and_what_to_do(tmp_path) -> None:
    from codelearn.index.onnx_embedder import MiniLMInt8Embedder

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(CodelearnError) as info:
        MiniLMInt8Embedder(threads=1, cache_dir=blocker / "embedders")
    assert "CODELEARN_HOME" in info.value.fix and "minilm-fp32" in info.value.fix


def test_registry_names_match_what_the_backends_call_their_vectors() -> None:
    from codelearn.index.onnx_embedder import vectors_name

    assert get_embedder("default").name == vectors_name("int8")
    assert get_embedder("minilm-fp32").name == vectors_name("float")
