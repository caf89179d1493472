"""A trained run read back: features, reconstructions, exported weights, anomaly scores."""
