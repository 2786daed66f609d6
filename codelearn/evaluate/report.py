"""Eval reports on disk (one folder per run, kept for the trend) and their plots.

matplotlib (the `eval` extra) is imported only here, with its file-only backend.
"""

from __future__ import annotations

import json
from pathlib import Path

from codelearn.paths import write_json
from codelearn.project import Project


def runs_dir(project: Project) -> Path:
    return project.state / "eval" / "runs"


def save_report(project: Project, report: dict) -> dict:
    """Write report.json and the plot into a new run folder; returns the report with their paths."""
    from codelearn.paths import new_run_dir

    from codelearn.machine import this_machine

    folder = new_run_dir(runs_dir(project))
    report.setdefault("machine", this_machine().as_json())
    report["files"] = {"report": str(folder / "report.json"), "plot": None}
    try:
        report["files"]["plot"] = str(plot_report(report, folder / "eval.png"))
    except ImportError:
        report.setdefault("notes", []).append("no plot: matplotlib is missing (pip install 'codelearn[eval]')")
    write_json(folder / "report.json", report)
    return report


def history(project: Project) -> list[dict]:
    """Headline numbers of every saved run, oldest first."""
    rows = []
    for path in sorted(runs_dir(project).glob("*/report.json")):
        try:
            report = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        rows.append(headline(report) | {"run": path.parent.name})
    return rows


def headline(report: dict) -> dict:
    """The few numbers a trend needs."""
    conditions = report.get("learning", {}).get("conditions", {})
    hybrid = report.get("retrieval", {}).get("sets", {}).get("docstring", {}).get("modes", {}).get("hybrid", {})
    forgetting = report.get("learning", {}).get("forgetting", {}).get("general_code", {})
    return {"time": report.get("time"), "quick": report.get("quick"),
            "adapted": report.get("models", {}).get("adapted"),
            **{f"loss_{name}": row.get("loss") for name, row in conditions.items()},
            "recall@5": hybrid.get("recall@5"), "mrr": hybrid.get("mrr"),
            "general_code_change": forgetting.get("change")}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_report(report: dict, dest: Path) -> Path:
    """Bars: the four conditions; context use per model; retrieval recall@5 per mode."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    learning = report.get("learning", {})
    conditions = learning.get("conditions", {})
    _bars(axes[0], list(conditions), [r["loss"] for r in conditions.values()],
          "held-out repo loss (lower is better)")
    context = learning.get("context_use", {})
    _grouped(axes[1], context, ("none", "relevant", "random"), "repo loss by context (per model)", zoom=True)
    sets = report.get("retrieval", {}).get("sets", {})
    modes = {name: {mode: m.get("recall@5") for mode, m in s.get("modes", {}).items()} for name, s in sets.items()}
    _grouped(axes[2], modes, ("keyword", "vector", "hybrid"), "retrieval recall@5 per query set")
    fig.suptitle(f"codelearn eval — {Path(report.get('repo', '')).name} — {report.get('time', '')}")
    fig.tight_layout()
    fig.savefig(dest, dpi=90)
    plt.close(fig)
    return dest


def _bars(ax, labels: list[str], values: list, title: str) -> None:
    ax.set_title(title, fontsize=10)
    if not labels:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
        return
    shown = [v if v is not None else 0.0 for v in values]
    ax.bar(labels, shown, color=["#999", "#6a9", "#58c", "#36a"][: len(labels)])
    for i, v in enumerate(values):
        ax.text(i, shown[i], "n/a" if v is None else f"{v:.3f}", ha="center", va="bottom", fontsize=8)
    _zoom(ax, shown)
    ax.tick_params(axis="x", labelsize=8)


def _zoom(ax, values: list[float]) -> None:
    """Losses differ by a few percent: start the axis near the smallest bar, not at zero."""
    real = [v for v in values if v]
    if real:
        low, high = min(real), max(real)
        ax.set_ylim(max(0.0, low - (high - low) * 0.5 - low * 0.02), high + (high - low) * 0.3 + high * 0.01)


def _grouped(ax, groups: dict, keys: tuple[str, ...], title: str, zoom: bool = False) -> None:
    ax.set_title(title, fontsize=10)
    if not groups:
        ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
        return
    width = 0.8 / len(keys)
    for j, key in enumerate(keys):
        values = [groups[g].get(key) or 0.0 for g in groups]
        ax.bar([i + j * width for i in range(len(groups))], values, width, label=key)
    ax.set_xticks([i + width * (len(keys) - 1) / 2 for i in range(len(groups))], list(groups), fontsize=8)
    ax.legend(fontsize=7)
    if zoom:
        _zoom(ax, [groups[g].get(k) or 0.0 for g in groups for k in keys])


def plot_history(rows: list[dict], dest: Path) -> Path:
    """The trend across runs: repo loss per condition and retrieval recall@5."""
    plt = _pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    x = list(range(1, len(rows) + 1))
    for key in ("loss_base", "loss_base+retrieval", "loss_adapted", "loss_adapted+retrieval"):
        values = [r.get(key) for r in rows]
        if any(v is not None for v in values):
            left.plot(x, [v if v is not None else float("nan") for v in values], marker="o", label=key[5:])
    left.set_title("held-out repo loss per run", fontsize=10)
    left.legend(fontsize=7)
    right.plot(x, [r.get("recall@5") if r.get("recall@5") is not None else float("nan") for r in rows],
               marker="o")
    right.set_title("hybrid recall@5 (docstring set) per run", fontsize=10)
    fig.tight_layout()
    fig.savefig(dest, dpi=90)
    plt.close(fig)
    return dest
