"""The repo's code as training and evaluation material: units, hold-out split,
neighbours and the token-level text formats, shared by `train` and `eval`."""
