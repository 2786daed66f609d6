"""Answer engines: a local GGUF through llama-cpp-python, or a llama.cpp server."""
