"""aelab: autoencoders in JAX/Flax with explicit preprocessing and transparent features."""

__version__ = "0.1.0"
