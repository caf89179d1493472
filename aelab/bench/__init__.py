"""The benchmark: `python -m aelab.bench` times the trainer's loop against a bare loop and references."""
