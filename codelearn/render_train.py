"""Rich renderings of `codelearn train` reports and `models history`."""

from __future__ import annotations

from rich.table import Table

from codelearn.console import info, out


def _mix_table(dataset: dict) -> Table:
    table = Table(title="training mix", title_justify="left")
    for column in ("kind", "samples", "tokens", "trained tokens"):
        table.add_column(column, justify="left" if column == "kind" else "right")
    for kind, row in dataset.get("kinds", {}).items():
        table.add_row(kind, str(row["samples"]), f"{row['tokens']:,}", f"{row['trained_tokens']:,}")
    table.add_row("total", str(dataset.get("samples", 0)), f"{dataset.get('tokens', 0):,}", "")
    return table


def _split_line(dataset: dict) -> str:
    split = dataset.get("split", {})
    cut = split.get("cut")
    where = (f"cut at {cut['commit'][:10]} ({cut['commits_after']} commits, {cut['lines_after']} of "
             f"{cut['lines_total']} added lines after it)") if cut else "no temporal cut"
    return (f"hold-out: {split.get('heldout_new', 0)} new chunks + {split.get('heldout_random', 0)} random; "
            f"{split.get('withheld_partly_new', 0)} partly new withheld; {split.get('train_chunks', 0)} "
            f"training chunks; {where}; replay share {dataset.get('replay_share', 0):.1%}")


def _gate_table(gate: dict) -> Table:
    scale = gate.get("scale", 1.0)
    title = "gate: serving vs candidate" + (f" at {scale:g} of its learned change" if scale != 1.0 else "")
    table = Table(title=title, title_justify="left")
    for column in ("check", "serving", "candidate", "change [interval]", "rule", "result"):
        table.add_column(column)
    for check in gate.get("checks", []):
        table.add_row(check["name"], _loss(check["serving"]), _loss(check["candidate"]), _change(check),
                      check["rule"], _status(check))
    return table


def _loss(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _change(check: dict) -> str:
    change, interval = check.get("change"), check.get("interval")
    if change is None:
        return ""
    versus = " vs base" if check.get("base") is not None else ""
    return f"{change:+.2%}{versus}" + (f" [{interval[0]:+.2%}, {interval[1]:+.2%}]" if interval else "")


def _status(check: dict) -> str:
    status = check.get("status", "passed" if check["passed"] else "failed")
    if status == "passed":
        return "[green]✓[/]"
    if status == "failed":
        return "[red]✗ failed[/]"
    return "[red]not checked[/]" if check.get("required", True) else "[yellow]not checked[/]"


def render_train(report, quiet: bool = False) -> None:
    """Print what a run did; the outcome line always, details unless quiet."""
    if not quiet and report.dataset:
        out.print(_mix_table(report.dataset))
        out.print(_split_line(report.dataset))
        for note in report.dataset.get("notes", []):
            out.print(f"note: {note}")
    if not quiet and report.precision:
        out.print(f"precision: {report.precision['precision']} ({report.precision['reason']})")
    training = report.training
    if not quiet and training:
        out.print(f"trained {training['steps']} steps ({training['backend']}, {training['device']}, "
                  f"{training['dtype']}): {training['tokens']:,} tokens at {training['tokens_per_s']:.0f} tok/s "
                  f"in {training['seconds']:.0f}s; loss {training['first_loss']:.3f} → {training['last_loss']:.3f} "
                  f"(stopped: {_stopped(training)}); peak memory {training['peak_rss_mb']:.0f} MB")
        carried = training.get("carried") or {}
        if carried:
            out.print(f"went on from run {carried['run_id']}, promoted with training left: {carried['steps']} steps, "
                      f"{carried['seconds']:.0f}s trained on the same data before (train_carry_on)")
        warm = training.get("warm") or {}
        if warm:
            why = (f"{warm['refused']} candidate(s) from it were refused since, so another try with new samples"
                   if warm.get("refused") else "the data changed since")
            out.print(f"started from run {warm['run_id']}'s adapter, not the base: {why}; "
                      f"{warm['tokens']:,} tokens were trained along its lineage (train_warm_start)")
        if training.get("resumed") and training["resumed"]["steps"] != carried.get("steps"):
            done = training["resumed"]
            out.print(f"went on from step {done['steps']}: a run that stopped had trained {done['seconds']:.0f}s "
                      "and saved its state")
    if not quiet and report.export:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in report.export["seconds"].items())
        out.print(f"exported {report.export['kind']} ({report.export['quant']}, "
                  f"{report.export['size'] / 1e6:.1f} MB): {steps}")
    if not quiet and report.search:
        out.print(_search_line(report.search))
    if not quiet and report.gate:
        out.print(_gate_table(report.gate))
        tries = report.gate.get("tries", [])
        for tried in tries[:-1] if report.gate.get("promote") else tries[1:]:  # the ones the table is not
            out.print(_try_line(tried))
    info(report.message + (f" Log: {report.log}" if report.log else ""))


def _try_line(tried: dict) -> str:
    """A strength of the candidate the gate refused (or, refused at every strength, tried after)."""
    changes = tried.get("changes", {})
    failed = ", ".join(f"{name} {changes[name]:+.1%}" if name in changes else name for name in tried["failed"])
    repo = f"; repo loss {changes['repo_loss']:+.1%}" if "repo_loss" in changes else ""
    strength = "at full strength" if tried["scale"] == 1.0 else f"at {tried['scale']:g} of its learned change"
    return f"{strength}: failed {failed or '-'}{repo} (forget_scales)"


def _stopped(training: dict) -> str:
    if training.get("partial_step"):
        return (f"{training['stopped']}, inside the last step: its {training['partial_step']} "
                "sequences applied as a smaller step")
    return training["stopped"]


def _search_line(search: dict) -> str:
    if "error" in search:
        return f"search model: not tuned ({search['error']})"
    verdict = "promoted" if search.get("promoted") else "kept the current one"
    return f"search model: {verdict}: {search.get('reason', '')}"


def render_history(rows: list[dict]) -> None:
    if not rows:
        out.print("No trained models for this repo yet. Run `codelearn train`.")
        return
    table = Table()
    for column in ("name", "added", "status", "export", "repo loss (serving → candidate)", "failed checks"):
        table.add_column(column)
    for row in rows:
        before, after = row["repo_loss_serving"], row["repo_loss_candidate"]
        change = f"{before:.4f} → {after:.4f}" if before is not None and after is not None else "n/a"
        export = (row["export"] or "") + (f" at {row['scale']:g}" if row.get("scale", 1.0) != 1.0 else "")
        table.add_row(row["name"], row["added"], row["status"], export, change,
                      ", ".join(row["failed_checks"]) or "-")
    out.print(table)


def render_search_tuning(report) -> None:
    """What `codelearn train --search` did: the held-out ranking before and after, and the outcome."""
    if report.steps:
        out.print(f"tuned on {report.pairs - report.held_out} documented definitions ({report.held_out} held out): "
                  f"{report.steps} steps in {report.train_seconds:.0f}s, last loss {report.loss:.3f}")
    if report.before and report.after:
        table = Table(title="held-out code found by its docstring's first sentence", title_justify="left")
        for column in ("model", "recall@1", "recall@5", "recall@10", "MRR"):
            table.add_column(column, justify="left" if column == "model" else "right")
        for label, row in (("current", report.before), ("tuned", report.after)):
            table.add_row(label, *(f"{row[k]:.3f}" for k in ("recall@1", "recall@5", "recall@10", "mrr")))
        out.print(table)
    if report.busy:
        info(f"Not run: {report.reason}.")
    elif report.promoted:
        info(f"Promoted: {report.reason}. Search uses {report.model}; index re-embedded in "
             f"{report.reindex_seconds:.0f}s. Undo: codelearn models rollback --search")
    else:
        info(f"Not promoted: {report.reason}.")
