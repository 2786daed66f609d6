"""Trainer backends behind one interface, chosen by the `train_backend` setting."""
