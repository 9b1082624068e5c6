"""The from-scratch NumPy engine of assignment 1 (mnist_scratch), which fashion_mnist_ffn reuses as the course
asks ("the network of assignment 1"), the NumPy CNN included.

CS231n conventions: layers are `forward(x) -> (out, cache)` and `backward(dout, cache) -> grads`;
optimizers are `update(w, dw, state) -> (w, state)`; every piece is registered by name."""
