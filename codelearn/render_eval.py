"""Rich renderings of `codelearn eval` reports and their trend."""

from __future__ import annotations

from rich.table import Table

from codelearn.console import info, out


def _f(value, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pct(value) -> str:
    return "" if value is None else f"{value:+.1%}"


def _retrieval(section: dict) -> None:
    table = Table(title=f"retrieval ({section.get('targets', 0)} targets)", title_justify="left")
    for column in ("set", "mode", "recall@1", "recall@5", "recall@10", "MRR"):
        table.add_column(column)
    for name, data in section.get("sets", {}).items():
        for mode, m in data.get("modes", {}).items():
            table.add_row(name, mode, _f(m.get("recall@1"), 3), _f(m.get("recall@5"), 3),
                          _f(m.get("recall@10"), 3), _f(m.get("mrr"), 3))
    out.print(table)
    prompt = section.get("prompt")
    if prompt:
        out.print(f"reaching ask's prompt at max_context {prompt['max_context']}: target file "
                  f"{_f(prompt['target_file_shown'], 3)}, target itself {_f(prompt['target_shown'], 3)}")


def _learning(section: dict) -> None:
    table = Table(title="held-out repo code (never trained on)", title_justify="left")
    for column in ("condition", "loss", "vs base", "next-line exact", "tokens"):
        table.add_column(column)
    for name, row in section.get("conditions", {}).items():
        table.add_row(name, _f(row["loss"]), _pct(row.get("change_vs_base")), _f(row["next_line_exact"], 3),
                      str(row["tokens"]))
    out.print(table)
    for group, row in section.get("forgetting", {}).items():
        out.print(f"forgetting, {group}: base {_f(row['base'])} → adapted {_f(row['adapted'])} "
                  f"{_pct(row['change'])}")
    for model, row in section.get("context_use", {}).items():
        out.print(f"context use, {model}: none {_f(row['none'])}, relevant {_f(row['relevant'])} "
                  f"(gain {_f(row['relevant_gain'])}), random {_f(row['random'])} "
                  f"(penalty {_f(row['random_penalty'])})")
    use = section.get("from_use")
    if use:
        out.print(f"from use: {use['cases']} held-out corrections, base {_f(use['base'])} → adapted "
                  f"{_f(use['adapted'])} {_pct(use['change'])}")
    knowledge = section.get("repo_knowledge")
    if knowledge:
        out.print(f"repo knowledge: repo loss {_pct(knowledge['repo_change'])} vs general code "
                  f"{_pct(knowledge['general_code_change'])} → " + (
                      f"repo-specific {_pct(knowledge['repo_specific'])}" if knowledge["repo_specific"] is not None
                      else "no repo-specific gain claimed (general code got worse)"))
    for note in section.get("notes", []):
        out.print(f"note: {note}")


def _answering(section: dict) -> None:
    if not section.get("questions"):
        return
    cites = section.get("citations", {})
    out.print(f"answering ({section['questions']} questions about held-out code): where correct "
              f"{_f(section.get('where_correct'), 2)}, names the symbol {_f(section.get('names_symbol'), 2)}, "
              f"target among sources {_f(section.get('target_in_sources'), 2)}, citations verified "
              f"{cites.get('verified', 0)}/{cites.get('total', 0)}")
    facts = section.get("facts")
    if facts and facts.get("questions"):
        rights = ", ".join(f"{model} {n}/{facts['questions']}" for model, n in facts["right"].items())
        out.print(f"facts right (literal answers about held-out code, asked through `ask`): {rights}")


def render_report(report: dict) -> None:
    if "retrieval" in report:
        _retrieval(report["retrieval"])
    if "learning" in report:
        _learning(report["learning"])
    if "answering" in report:
        _answering(report["answering"])
    for note in report.get("notes", []):
        out.print(f"note: {note}")
    files = report.get("files", {})
    info(f"Report: {files.get('report')}" + (f"  Plot: {files['plot']}" if files.get("plot") else ""))


def render_history(project, rows: list[dict]) -> None:
    if not rows:
        out.print("No eval runs yet. Run `codelearn eval`.")
        return
    table = Table(title="eval runs", title_justify="left")
    keys = ("run", "adapted", "loss_base", "loss_base+retrieval", "loss_adapted", "loss_adapted+retrieval",
            "recall@5", "general_code_change")
    for key in keys:
        table.add_column(key)
    for row in rows:
        table.add_row(*[(_f(row.get(k)) if isinstance(row.get(k), float) else str(row.get(k) or "")) for k in keys])
    out.print(table)
    try:
        from codelearn.evaluate.report import plot_history, runs_dir

        info(f"Trend plot: {plot_history(rows, runs_dir(project) / 'history.png')}")
    except ImportError:
        info("No trend plot: matplotlib is missing (pip install 'codelearn[eval]').")
