"""Open the model that answers for a project: a llama.cpp server or a local GGUF.

Loading a local model takes 0.3-2 s; `ModelLoader` starts it in a thread so
it overlaps with opening the index and searching (llama.cpp releases the GIL
while it reads the file).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from codelearn.llm.base import ChatModel
from codelearn.project import Project


@dataclass(frozen=True)
class ModelChoice:
    """Which model answers and why; shown under every answer."""

    name: str
    backend: str
    path: str
    reason: str
    sha256: str = ""
    kind: str = "base"
    multi_query: bool = False  # the catalogue says it writes useful search queries

    def as_json(self) -> dict:
        return dict(vars(self))


def open_model(project: Project, override: str = "",
               progress: Callable[[int, int | None], None] | None = None) -> tuple[ChatModel, ModelChoice]:
    """The answer model for `project`; `override` is a `--model` value."""
    settings = project.settings
    if settings.model_url and not override:
        from codelearn.llm.server_backend import ServerModel

        server = ServerModel(settings.model_url, context_size=settings.context_size)
        return server, ModelChoice(server.name, server.backend, settings.model_url, "model_url")
    from codelearn.llm.llama_backend import LlamaModel
    from codelearn.models.registry import Registry, resolve_model

    origin = "--model" if override else f"setting ({project.loaded.origins.get('model', 'default')})"
    resolved = resolve_model(Registry(), override or settings.model, project.key, origin, progress)
    model = LlamaModel(resolved.path, name=resolved.name, declared_format=resolved.template,
                       format_override=settings.chat_format, context_size=settings.context_size,
                       threads=settings.threads, gpu_layers=settings.gpu_layers, lora_path=resolved.lora)
    entry = resolved.entry
    return model, ModelChoice(resolved.name, model.backend, str(resolved.path), resolved.reason,
                              entry.sha256 if entry else "", entry.kind if entry else "file",
                              bool(resolved.spec and resolved.spec.multi_query))


class ModelLoader:
    """Opens the model in a background thread and evaluates the fixed start of
    the prompt there; `get()` waits for it.

    While llama-cpp-python loads a model it points the process's stdout and
    stderr at /dev/null (fd-level, to hide llama.cpp's own prints). Nothing may
    be printed until the load is over: callers `close()` (which waits) before
    reporting an error, and print nothing while the load runs.
    """

    def __init__(self, project: Project, override: str = "") -> None:
        self._result: tuple[ChatModel, ModelChoice] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(project, override), daemon=True,
                                        name="codelearn-model-load")
        self._thread.start()

    def _run(self, project: Project, override: str) -> None:
        try:
            self._result = open_model(project, override)
            warm = getattr(self._result[0], "warm", None)
            if warm is not None:
                from codelearn.ask.prompt import prompt_head

                warm(*prompt_head())
        except BaseException as exc:  # re-raised in the caller's thread by get()
            self._error = exc

    def get(self) -> tuple[ChatModel, ModelChoice]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._result is not None
        return self._result

    __call__ = get

    def close(self) -> None:
        """Free the model (after waiting for a load still running)."""
        self._thread.join()
        if self._result is not None:
            self._result[0].close()
