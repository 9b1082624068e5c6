"""Fashion-MNIST with a feed-forward network on the NumPy engine: optimizers, sweeps, losses."""
