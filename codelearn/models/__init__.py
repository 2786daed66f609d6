"""Answer models: the curated catalogue, the user's registry, GGUF metadata, downloads."""
