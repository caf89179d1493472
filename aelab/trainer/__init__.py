"""The trainer: state, the one forward pass, the scanned step, the loop, checkpoints, writers."""
