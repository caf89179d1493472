"""Evaluators: small named modules, each run on held-out data, chosen in `config.evals`."""
