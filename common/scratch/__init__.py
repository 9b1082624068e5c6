"""The from-scratch NumPy engine shared by mnist_scratch and fashion_mnist_ffn (and the NumPy CNN).

CS231n conventions: layers are `forward(x) -> (out, cache)` and `backward(dout, cache) -> grads`;
optimizers are `update(w, dw, state) -> (w, state)`; every piece is registered by name."""
