"""Measuring what retrieval and learning buy: shared by `codelearn eval` and the training gate."""
