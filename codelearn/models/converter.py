"""Get llama.cpp's own HF → GGUF converters and run them in a subprocess.

    converter = converter_dir(settings.converter_path, progress=show)
    run_convert_hf(merged_dir, out / "model.f16.gguf", converter=converter, log_file=log)
    run_convert_lora(adapter_dir, base_dir, out / "adapter.gguf", converter=converter)

Decisions, so that they can be argued with:
- The converter must match the llama.cpp inside the installed llama-cpp-python, so it comes from
  that version's source distribution (`vendor/llama.cpp/`): the wheel lacks it, and PyPI's `gguf`
  differs from the `gguf-py` the scripts expect (see FACTS.md, "Training").
- Where it comes from, first found wins: the `converter_path` setting (a converter folder, a
  llama.cpp checkout, an extracted sdist, or the sdist `.tar.gz`); the user cache; a download of the
  sdist from the package index (`$CODELEARN_PYPI_SIMPLE`, default PyPI's simple index).
- Supported versions have a pinned sdist SHA-256. Another version trusts the `#sha256=` fragment of
  the index page (HTTPS by default) and logs a warning.
- Only regular files under the four needed paths are written, each path checked to stay inside
  the target, through `extractfile`: no links, devices, owners or modes ever reach the disk (what
  tarfile's "data" filter guards against, on every Python). A member that would escape refuses
  the whole tarball. The folder is built beside the cache, gets a `COMPLETE` marker (the sdist's
  SHA-256) last, and is renamed into place, so a half-extracted folder is never used.
- The scripts run with this interpreter in a subprocess: their heavy imports and `sys.path`
  changes stay out of codelearn, and hub access is switched off so a missing local file fails
  instead of downloading.
"""

from __future__ import annotations

import html
import importlib.metadata
import importlib.util
import logging
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zlib
from pathlib import Path
from typing import IO, Callable
from urllib.parse import unquote, urljoin, urlsplit

from codelearn.errors import CodelearnError, MissingExtraError
from codelearn.models.download import Progress, download, hash_file
from codelearn.paths import user_cache_dir

logger = logging.getLogger(__name__)

PACKAGE = "llama-cpp-python"
PINNED: dict[str, tuple[str, str]] = {
    "0.3.36": ("llama_cpp_python-0.3.36.tar.gz",
               "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"),
}
INDEX_VARIABLE = "CODELEARN_PYPI_SIMPLE"
DEFAULT_INDEX = "https://pypi.org/simple"
TIMEOUT = 20.0  # seconds per connect and per read: an offline machine gets its answer fast
SCRIPTS = ("convert_hf_to_gguf.py", "convert_lora_to_gguf.py")
PACKAGES = ("conversion", "gguf-py")
MARKER = "COMPLETE"
TAIL_LINES = 15
HF_OUTTYPES = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0", "auto")
LORA_OUTTYPES = ("f32", "f16", "bf16", "q8_0", "auto")
# What the scripts import on the way to a Llama or Qwen2 GGUF (module, package to install):
# torch and numpy throughout, transformers.AutoConfig at the top of conversion/base.py, yaml in
# gguf-py's metadata.py, sentencepiece for tokenizer.model (Qwen2 tries it before BPE and only
# catches FileNotFoundError), safetensors for reading a LoRA adapter.
HF_NEEDS = (("torch", "torch"), ("numpy", "numpy"), ("transformers", "transformers"),
            ("yaml", "pyyaml"), ("sentencepiece", "sentencepiece"))
LORA_NEEDS = (*HF_NEEDS, ("safetensors", "safetensors"))

_HREF = re.compile(r"""<a\s[^>]*?href\s*=\s*["']([^"']+)["']""", re.IGNORECASE)
_SDIST_TOP = re.compile(r"llama[-_.]cpp[-_.]python-(.+)", re.IGNORECASE)


# -- finding a converter ----------------------------------------------------------------------

def installed_version() -> str:
    """The installed llama-cpp-python's version, which the converter must match."""
    from codelearn.llm.native_engine import installed_version as found

    version = found()
    if version is None:
        raise CodelearnError("llama-cpp-python is not installed, so no converter can match it.",
                             "Install codelearn with its dependencies: pip install codelearn")
    return version


def converter_dir(local: str = "", *, version: str | None = None,
                  progress: Progress | None = None) -> Path:
    """A folder with llama.cpp's converters for llama-cpp-python `version` (default: installed)."""
    version = version or installed_version()
    if local:
        return _from_local(Path(local).expanduser(), version)
    target = cache_path(version)
    if _is_complete(target, _pinned_sha256(version)):
        logger.debug("using the cached converter in %s", target)
        return target
    return _download(version, target, progress)


def _pinned_sha256(version: str) -> str | None:
    return PINNED[version][1] if version in PINNED else None


def _sdist_name(version: str) -> str:
    return PINNED[version][0] if version in PINNED else f"llama_cpp_python-{version}.tar.gz"


def cache_path(version: str) -> Path:
    """Where the converter for `version` is kept once extracted."""
    return user_cache_dir() / "converters" / f"llama-cpp-python-{version}"


def _from_local(path: Path, version: str) -> Path:
    if path.is_file():
        if path.name.endswith((".tar.gz", ".tgz")):
            return _from_tarball(path, version)
        raise CodelearnError(f"converter_path {path} is a file, not a .tar.gz source distribution.",
                             _manual_fix(version))
    for candidate in (path, path / "vendor" / "llama.cpp"):
        if _has_converter(candidate):
            logger.info("using the converter in %s (its version is not checked)", candidate)
            return candidate
    what = "does not exist" if not path.exists() else (
        "holds no llama.cpp converter (convert_hf_to_gguf.py, convert_lora_to_gguf.py, "
        "conversion/, gguf-py/, here or under vendor/llama.cpp/)")
    raise CodelearnError(f"converter_path {path} {what}.", _manual_fix(version))


def _from_tarball(tarball: Path, version: str) -> Path:
    sha256 = checked_sdist(tarball, version)
    target = cache_path(version)
    if _is_complete(target, sha256):
        return target
    return _install(tarball, target, sha256)


def _has_converter(folder: Path) -> bool:
    return (all((folder / name).is_file() for name in SCRIPTS)
            and all((folder / name).is_dir() for name in PACKAGES))


def _is_complete(folder: Path, sha256: str | None = None) -> bool:
    """True when `folder` was fully extracted (from the sdist with `sha256`, when given)."""
    marker = folder / MARKER
    if not marker.is_file() or not _has_converter(folder):
        return False
    return sha256 is None or marker.read_text().strip() == sha256


# -- downloading -------------------------------------------------------------------------------

def _download(version: str, target: Path, progress: Progress | None) -> Path:
    """Fetch the sdist from the index, verify it, and extract the converter into `target`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        tarball, sha256 = fetch_sdist(version, Path(tmp), progress)
        return _install(tarball, target, sha256)


def fetch_sdist(version: str, folder: Path, progress: Progress | None = None) -> tuple[Path, str]:
    """Download llama-cpp-python `version`'s sdist into `folder`, verified: (tarball, sha256)."""
    url, listed = _find_sdist(version, folder)
    sha256 = _expected_sha256(version, url, listed)
    tarball = folder / _url_filename(url)
    try:
        download(url, tarball, sha256=sha256, progress=progress, timeout=TIMEOUT)
    except CodelearnError as error:
        raise _download_error(version, error) from None
    return tarball, sha256


def cached_sdist(version: str, folder: Path, progress: Progress | None = None) -> Path:
    """llama-cpp-python `version`'s sdist kept in `folder`: the checked copy already there (a
    corrupt or replaced one is deleted), else downloaded beside it and moved in once verified."""
    for cached in sorted(folder.glob(f"llama*cpp*python-{version}.tar.gz")):
        try:
            checked_sdist(cached, version)
            return cached
        except CodelearnError:
            cached.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".download-") as tmp:
        tarball, _ = fetch_sdist(version, Path(tmp), progress)
        return Path(shutil.move(str(tarball), folder / tarball.name))


def checked_sdist(tarball: Path, version: str) -> str:
    """The SHA-256 of a local sdist once it is known to be llama-cpp-python `version`'s (pinned
    versions: the published file's)."""
    found = _sdist_version(tarball)
    if found != version:
        raise CodelearnError(
            f"{tarball.name} is llama-cpp-python {found}, but {version} is installed: "
            "llama.cpp's scripts and sources must match the llama.cpp that is installed.",
            _manual_fix(version))
    sha256 = hash_file(tarball).hexdigest()
    pinned = _pinned_sha256(version)
    if pinned and sha256 != pinned:
        raise CodelearnError(
            f"{tarball} is not the published llama-cpp-python {version} sdist: expected "
            f"SHA-256 {pinned}, got {sha256}.", _manual_fix(version))
    if not pinned:
        logger.warning("llama-cpp-python %s is not pinned in codelearn: using %s (sha256 %s) "
                       "unverified", version, tarball, sha256)
    return sha256


def _expected_sha256(version: str, url: str, listed: str | None) -> str:
    """The pinned SHA-256; for an unpinned version the index's, with a warning."""
    pinned = _pinned_sha256(version)
    if pinned:
        return pinned
    if not listed:
        raise CodelearnError(f"The package index lists no SHA-256 for {url}, and llama-cpp-python "
                             f"{version} is not pinned in codelearn.", _manual_fix(version))
    logger.warning("llama-cpp-python %s is not pinned in codelearn: trusting the index's "
                   "sha256 %s", version, listed)
    return listed


def _find_sdist(version: str, tmp: Path) -> tuple[str, str | None]:
    """The sdist's URL and the SHA-256 the index lists for it (None when it lists none)."""
    index = (os.environ.get(INDEX_VARIABLE) or DEFAULT_INDEX).rstrip("/")
    page_url = f"{index}/{PACKAGE}/"
    page = tmp / "index.html"
    try:
        download(page_url, page, timeout=TIMEOUT)
    except CodelearnError as error:
        raise _download_error(version, error) from None
    wanted = _canonical(_sdist_name(version))
    for href in _HREF.findall(page.read_text(encoding="utf-8", errors="replace")):
        url = urljoin(page_url, html.unescape(href))
        if _canonical(_url_filename(url)) == wanted:
            match = re.search(r"sha256=([0-9a-fA-F]{64})", urlsplit(url).fragment)
            return url.split("#", 1)[0], match.group(1).lower() if match else None
    raise CodelearnError(f"The package index {index} lists no source distribution of "
                         f"llama-cpp-python {version}.", _manual_fix(version))


def _url_filename(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


def _canonical(filename: str) -> str:
    """Old sdists are named llama-cpp-python-*, newer ones llama_cpp_python-*."""
    return filename.lower().replace("_", "-")


def _download_error(version: str, error: CodelearnError) -> CodelearnError:
    return CodelearnError(f"Could not download llama.cpp's converter (llama-cpp-python {version} "
                          f"sdist): {error.message}", _manual_fix(version))


def _manual_fix(version: str) -> str:
    return (f"Download {_sdist_name(version)} elsewhere (pip download --no-deps "
            f"--no-binary :all: llama-cpp-python=={version}) and set "
            "converter_path = '/path/to/it'.")


# -- extracting --------------------------------------------------------------------------------

def _sdist_version(tarball: Path) -> str:
    """The version in the sdist's top folder name (llama_cpp_python-<version>/)."""
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            first = tar.next()
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise _unreadable(tarball, error) from None
    match = _SDIST_TOP.fullmatch(first.name.split("/", 1)[0]) if first else None
    if not match:
        raise CodelearnError(f"{tarball} is not a llama-cpp-python source distribution.",
                             "Point converter_path at llama_cpp_python-<version>.tar.gz.")
    return match.group(1)


def _install(tarball: Path, target: Path, sha256: str) -> Path:
    """Extract the converter from `tarball` beside `target`, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        extract(tarball, staging)
        if not _has_converter(staging):
            raise CodelearnError(f"{tarball.name} has no llama.cpp converter under "
                                 "vendor/llama.cpp/.", "Use the llama-cpp-python sdist (.tar.gz).")
        (staging / MARKER).write_text(sha256 + "\n")
        _move_into_place(staging, target, sha256)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("extracted llama.cpp's converter into %s", target)
    return target


def extract(tarball: Path, dest: Path, needed: Callable[[str], list[str] | None] | None = None) -> None:
    """Write the regular files of the sdist that `needed` maps to a path below `dest` (default:
    the converter's), refusing unsafe paths."""
    needed = needed or _needed
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            for member in tar:
                rel = needed(member.name)
                if rel is None or member.isdir():
                    continue
                path = _inside(dest, rel, member.name, tarball)
                if not member.isfile():
                    logger.debug("skipping %s: not a regular file", member.name)
                    continue
                path.parent.mkdir(parents=True, exist_ok=True)
                with tar.extractfile(member) as source, path.open("wb") as out:
                    shutil.copyfileobj(source, out)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise _unreadable(tarball, error) from None


def vendored(folders: tuple[str, ...], files: tuple[str, ...]) -> Callable[[str], list[str] | None]:
    """A member selector for `extract`: the path below vendor/llama.cpp/ of a member inside one of
    its `folders` or one of its top-level `files`, else None."""
    def needed(name: str) -> list[str] | None:
        parts = name.split("/")
        rel = parts[3:]
        if parts[1:3] != ["vendor", "llama.cpp"] or not rel:
            return None
        if rel[0] in folders or (len(rel) == 1 and rel[0] in files):
            return rel
        return None
    return needed


_needed = vendored(PACKAGES, SCRIPTS)  # the converter's scripts and packages


def _inside(dest: Path, rel: list[str], name: str, tarball: Path) -> Path:
    """`dest / rel`, or an error when the member's path could land outside `dest`."""
    path = dest.joinpath(*rel)
    unsafe = (name.startswith("/") or "\\" in name or any(p in ("", "..") for p in rel)
              or not path.resolve().is_relative_to(dest.resolve()))
    if unsafe:
        raise CodelearnError(f"{tarball.name} holds an unsafe path ({name!r}); nothing was used.",
                             "Use the llama-cpp-python sdist from PyPI.")
    return path


def _move_into_place(staging: Path, target: Path, sha256: str) -> None:
    if target.exists():
        if _is_complete(target, sha256):
            return  # another process finished the same work first
        shutil.rmtree(target)  # half-written by a crashed run, or from another sdist
    try:
        os.replace(staging, target)
    except OSError:
        if not _is_complete(target, sha256):
            raise


def _unreadable(tarball: Path, error: BaseException) -> CodelearnError:
    return CodelearnError(f"Could not read {tarball} ({error}).",
                          "Download the llama-cpp-python sdist again.")


# -- running -----------------------------------------------------------------------------------

def run_convert_hf(model_dir: Path, outfile: Path, outtype: str = "f16", *, converter: Path,
                   log_file: Path | None = None, timeout: float | None = None) -> Path:
    """Convert the Hugging Face model in `model_dir` to the GGUF file `outfile`."""
    _check_outtype(outtype, HF_OUTTYPES)
    require_modules(HF_NEEDS)
    model_dir = Path(model_dir).resolve()
    _require(model_dir / "config.json", "Save the model with save_pretrained() first.")
    return _run(Path(converter) / SCRIPTS[0], [str(model_dir)], outfile, outtype,
                log_file, timeout)


def run_convert_lora(adapter_dir: Path, base_dir: Path, outfile: Path, outtype: str = "f16", *,
                     converter: Path, log_file: Path | None = None,
                     timeout: float | None = None) -> Path:
    """Convert the PEFT LoRA adapter in `adapter_dir` (trained on `base_dir`) to a GGUF adapter."""
    _check_outtype(outtype, LORA_OUTTYPES)
    require_modules(LORA_NEEDS)
    adapter_dir, base_dir = Path(adapter_dir).resolve(), Path(base_dir).resolve()
    _require(adapter_dir / "adapter_config.json", "Save the adapter with save_pretrained() first.")
    _require(base_dir / "config.json", "Give the folder of the base model the adapter was "
                                       "trained on.")
    # Without --base the script fetches the base model's config from the hub.
    return _run(Path(converter) / SCRIPTS[1], [str(adapter_dir), "--base", str(base_dir)],
                outfile, outtype, log_file, timeout)


def require_modules(needs: tuple[tuple[str, str], ...]) -> None:
    """Raise MissingExtraError when a module the converter imports is not installed here."""
    for module, package in needs:
        if importlib.util.find_spec(module) is None:
            raise MissingExtraError(package, "train")


def _check_outtype(outtype: str, allowed: tuple[str, ...]) -> None:
    if outtype not in allowed:
        raise CodelearnError(f"{outtype!r} is not an output type llama.cpp's converter writes.",
                             f"Use one of: {', '.join(allowed)}.")


def _require(path: Path, fix: str) -> None:
    if not path.is_file():
        raise CodelearnError(f"{path} does not exist.", fix)


def _run(script: Path, args: list[str], outfile: Path, outtype: str,
         log_file: Path | None, timeout: float | None) -> Path:
    """Run `script` writing `<outfile>.partial`, and rename it onto `outfile` on success."""
    _require(script, "Set converter_path to a complete converter, or delete the cached one.")
    outfile = Path(outfile).resolve()
    partial = outfile.with_suffix(".partial")
    if "{" in partial.name or "}" in partial.name:
        # The converter fills {ftype}-style templates in the output name with str.format.
        raise CodelearnError(f"{outfile.name}: braces are not allowed in the output name.",
                             "Choose a name without { or }.")
    outfile.parent.mkdir(parents=True, exist_ok=True)
    partial.unlink(missing_ok=True)
    command = [sys.executable, str(script), *args, "--outfile", str(partial), "--outtype", outtype]
    logger.info("running %s", shlex.join(command))
    with _output(log_file) as out:
        out.write(f"$ {shlex.join(command)}\n".encode())
        out.flush()
        start = out.tell()
        code = _call(command, out, script, timeout, partial)
        tail = _tail(out, start)
    if code != 0 or not partial.is_file():
        partial.unlink(missing_ok=True)
        raise _conversion_error(script.name, code, tail, log_file)
    os.replace(partial, outfile)
    logger.info("wrote %s", outfile)
    return outfile


def _output(log_file: Path | None) -> IO[bytes]:
    """The log file to append the converter's output to, or a throwaway one."""
    if log_file is None:
        return tempfile.TemporaryFile()
    Path(log_file).parent.mkdir(parents=True, exist_ok=True)
    return Path(log_file).open("a+b")


def _call(command: list[str], out: IO[bytes], script: Path, timeout: float | None,
          partial: Path) -> int:
    try:
        return subprocess.run(command, stdin=subprocess.DEVNULL, stdout=out,
                              stderr=subprocess.STDOUT, env=_environment(), timeout=timeout,
                              check=False).returncode
    except subprocess.TimeoutExpired:
        partial.unlink(missing_ok=True)
        raise CodelearnError(f"{script.name} did not finish within {timeout:g} s and was stopped.",
                             "Allow it more time.") from None


def _environment() -> dict[str, str]:
    """This process's environment, with the bundled gguf-py forced and the hub switched off."""
    env = {key: value for key, value in os.environ.items() if key != "NO_LOCAL_GGUF"}
    env.update(PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return env


def _tail(out: IO[bytes], start: int, lines: int = TAIL_LINES) -> str:
    """The last `lines` lines the converter wrote after `start`."""
    end = out.seek(0, os.SEEK_END)
    out.seek(max(start, end - 64 * 1024))
    text = out.read().decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _conversion_error(script: str, code: int, tail: str, log_file: Path | None) -> CodelearnError:
    how = f"was killed by signal {-code}" if code < 0 else (
        f"failed (exit code {code})" if code else "wrote no output file")
    fix = "Check that the folder holds a complete model saved with save_pretrained(), "\
          "tokenizer files included"
    if "pre-tokenizer was not recognized" in tail:
        fix = "The tokenizer is not one llama.cpp knows: save the base model's own tokenizer files"
    elif code < 0:
        fix = "It may have run out of memory: close other programs or convert on a bigger machine"
    where = f"; the full output is in {log_file}" if log_file else ""
    return CodelearnError(f"llama.cpp's {script} {how}:\n{tail}", f"{fix}{where}.")
