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
        ("last indexed", f"{when} ({sum(last.get('seconds', {}).values()):.1f}s)" if last else when),
        ("files", f"{info['files_indexed']} indexed, {info['files_skipped']} skipped"),
        ("by source", ", ".join(f"{k}: {v}" for k, v in info["files_by_source"].items())),
        ("chunks", f"{info['chunks']} ({', '.join(f'{k} {v}' for k, v in list(info['chunks_by_language'].items())[:6])})"),
        ("vectors", f"{info['vectors']} ({info['embedder']}; {info['vectors_pending_store']} waiting for the vector store)"),
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


def render_config(values: dict, origins: dict) -> None:
    """Print `codelearn config`."""
    from codelearn.config import describe

    table = Table("setting", "value", "from", "description")
    for name, value in values.items():
        desc = describe(name)
        table.add_row(name, repr(value), origins[name], desc)
    out.print(table)
