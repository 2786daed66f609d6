"""A finished candidate becomes a registry entry (kind `adapted`), promoted or not."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

from codelearn.models.registry import ModelEntry, Registry, sha256_file
from codelearn.project import Project
from codelearn.models.bases import Base
from codelearn.train.export import ExportResult


def _move(src: Path, dest: Path) -> Path:
    """Move across filesystems without ever leaving a half-written `dest`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    shutil.copyfile(src, partial)
    os.replace(partial, dest)
    src.unlink()
    return dest


def head_commit(root: Path) -> str:
    proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=False)
    return proc.stdout.strip()


def candidate_name(project: Project, run_id: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "-", project.root.name).strip("-") or "repo"
    return f"{stem}-{run_id}"


def register_candidate(registry: Registry, project: Project, base: Base, export: ExportResult,
                       report, fingerprint: str) -> ModelEntry:
    """Move the exported files into the models folder and add the entry with its metrics."""
    name = candidate_name(project, report.run_id)
    folder = registry.root / "adapted"
    metrics = {"run_id": report.run_id, "commit": head_commit(project.root), "data_fingerprint": fingerprint,
               "cut": report.dataset.get("split", {}).get("cut"), "split": report.dataset.get("recipe"),
               "gate": report.gate, "scores": report.scores,
               "export": export.kind, "quant": export.quant,
               "training": {k: report.training.get(k) for k in (
                   "backend", "steps", "tokens", "trained_tokens", "seconds", "tokens_per_s",
                   "first_loss", "last_loss", "stopped", "device", "dtype")}}
    if export.adapter is not None:
        adapter = _move(export.adapter, folder / f"{name}.adapter.gguf")
        model, sha = base.gguf, base.sha256
        extra = {"adapter": str(adapter), "adapter_sha256": sha256_file(adapter)}
    else:
        model = _move(export.model, folder / f"{name}.gguf")
        sha = sha256_file(model)
        extra = {}
    stat = model.stat()
    entry = ModelEntry(name=name, path=str(model), sha256=sha, size=stat.st_size, mtime=stat.st_mtime,
                       source="trained", kind="adapted", base=base.name, repo=project.key,
                       template=base.template, metrics=metrics, **extra)
    return registry.add(entry)
