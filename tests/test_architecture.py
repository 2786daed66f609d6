"""The floors of the house (docs/architecture.md): imports between the top-level packages point
one way, lazy imports inside functions included."""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "codelearn"
PACKAGES = {p.name for p in ROOT.iterdir() if p.is_dir() and any(p.glob("*.py"))}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("codelearn."):
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names if alias.name.startswith("codelearn.")}
    return names


def _module(path: Path) -> str:
    return ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)


def package_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for path in ROOT.rglob("*.py"):
        mine = _module(path).split(".")[1]
        if mine not in PACKAGES:
            continue
        for name in _imports(path):
            theirs = name.split(".")[1]
            if theirs in PACKAGES and theirs != mine:
                graph[mine].add(theirs)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return trail + [node, nxt]
            if nxt not in state and (found := visit(nxt, trail + [node])):
                return found
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node, [])):
            return found
    return None


def test_the_graph_is_read_from_the_code():
    graph = package_graph()
    assert {"train", "evaluate", "corpus", "index"} <= PACKAGES
    assert "evaluate" in graph["train"] and "index" in graph["corpus"]  # the floors the rules protect


def test_no_import_loop_between_top_level_packages():
    assert _cycle(package_graph()) is None


def test_the_cycle_finder_finds_a_loop():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_floors_point_down():
    graph = package_graph()
    assert "train" not in graph["evaluate"], "evaluate measures; train uses it, never the reverse"
    assert "corpus" not in graph["index"], "the index builds on sources only; corpus reads the index"
    assert not ({"train", "evaluate", "corpus", "ask"} & graph["models"])


def test_the_embedding_backends_do_not_import_each_other_both_ways():
    index = ROOT / "index"
    embedder, onnx = _imports(index / "embedder.py"), _imports(index / "onnx_embedder.py")
    assert not any(n.startswith("codelearn.index.embedder") for n in onnx)
    assert any(n.startswith("codelearn.index.onnx_embedder") for n in embedder)  # picks it, lazily
