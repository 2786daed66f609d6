"""Fine-tuning the answer model on the repo."""
