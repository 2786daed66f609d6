"""What is indexed, when, how big, and what was left out."""

from __future__ import annotations

from pathlib import Path

from codelearn.index import search_model
from codelearn.index.catalog import Catalog
from codelearn.project import Project


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def index_status(project: Project) -> dict:
    """A JSON-ready summary of the project's index (empty `indexed` if none)."""
    from codelearn.index.lock import WriterLock

    from codelearn import __version__

    info: dict = {"version": __version__, "repo": str(project.root), "state_dir": str(project.state),
                  "indexed": project.catalog_path.exists()}
    if not info["indexed"]:
        return info
    catalog = Catalog(project.catalog_path, readonly=True)
    try:
        info.update(catalog.stats())
        info["embedder"] = catalog.get_meta("embedder")
        info["last_run"] = catalog.get_json("last_run")
        info["interrupted"] = catalog.get_meta("run_state") == "running"
        info["skipped"] = [
            {"source": r.source, "path": r.path, "reason": r.reason, "detail": r.detail}
            for r in catalog.skipped()]
        info["redacted"] = [
            {"source": s, "path": p, "lines": [x["line"] for x in reds],
             "kinds": sorted({x["kind"] for x in reds})}
            for s, p, reds in catalog.redactions()]
    finally:
        catalog.close()
    tuned = search_model.active(project.state)
    info["search_model"] = ({"tuned_on_repo": True, "file": tuned.file, "promoted": tuned.promoted,
                             "pairs": tuned.pairs, "scores": tuned.scores} if tuned else {"tuned_on_repo": False})
    info["index_bytes"] = _size(project.catalog_path)
    info["vector_store_bytes"] = _size(project.store_path)
    info["indexing_now"] = WriterLock(project.state).is_held() if project.state.exists() else False
    return info
