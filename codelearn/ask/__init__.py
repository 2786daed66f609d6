"""Retrieval-augmented answers: retrieve, merge, pack, prompt, cite."""
