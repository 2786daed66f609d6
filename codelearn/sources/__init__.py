"""What gets read: the user's repo and internal libraries, minus ignored, binary and secret files.

    source = repo_source(Path("."))
    listing = list_files(source, max_bytes=1_000_000)
    for entry in listing.entries:
        loaded = load_file(source, entry, max_bytes=1_000_000)
"""

from codelearn.sources.libraries import library_source, repo_source
from codelearn.sources.listing import list_files
from codelearn.sources.loading import hash_bytes, load_file
from codelearn.sources.records import (
    SKIP_REASONS,
    FileEntry,
    Listing,
    LoadedFile,
    Redaction,
    Skip,
    Source,
)

__all__ = [
    "SKIP_REASONS",
    "FileEntry",
    "Listing",
    "LoadedFile",
    "Redaction",
    "Skip",
    "Source",
    "hash_bytes",
    "library_source",
    "list_files",
    "load_file",
    "repo_source",
]
