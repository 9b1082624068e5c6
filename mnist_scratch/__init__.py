"""MNIST from scratch: a NumPy MLP trained with batch, stochastic and mini-batch gradient descent."""
