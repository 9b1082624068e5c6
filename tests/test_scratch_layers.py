"""Every layer and loss of the NumPy engine: centred differences in float64, and torch.autograd."""
import numpy as np
import pytest
import torch

from mnist_scratch.engine.gradcheck import numerical_gradient, numerical_gradient_array, rel_error
from mnist_scratch.engine.layers import ACTIVATIONS, affine_backward, affine_forward
from mnist_scratch.engine.losses import LOSSES
from mnist_scratch.engine.network import mlp
from mnist_scratch.engine.training import loss_and_grads


def test_affine_gradients_match_centred_differences():
    rng = np.random.default_rng(0)
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((7, 3)), rng.standard_normal(3)
    dout = rng.standard_normal((5, 3))
    _, cache = affine_forward(x, w, b)
    dx, dw, db = affine_backward(dout, cache)
    assert rel_error(dx, numerical_gradient_array(lambda: affine_forward(x, w, b)[0], x, dout)) < 1e-7
    assert rel_error(dw, numerical_gradient_array(lambda: affine_forward(x, w, b)[0], w, dout)) < 1e-7
    assert rel_error(db, numerical_gradient_array(lambda: affine_forward(x, w, b)[0], b, dout)) < 1e-7
    assert affine_backward(dout, cache, need_dx=False)[0] is None


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_gradients_match_centred_differences(name):
    act = ACTIVATIONS[name]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the ReLU kink
    dout = rng.standard_normal((4, 6))
    _, cache = act.forward(x)
    dx = act.backward(dout, cache)
    assert rel_error(dx, numerical_gradient_array(lambda: act.forward(x)[0], x, dout, h=1e-5)) < 1e-7
    assert np.allclose(act.derivative(x) * dout, dx)


TORCH_ACTIVATIONS = {"relu": torch.relu, "leaky_relu": lambda t: torch.nn.functional.leaky_relu(t, 0.01),
                     "sigmoid": torch.sigmoid, "tanh": torch.tanh}


def test_every_activation_has_a_torch_reference():
    assert set(TORCH_ACTIVATIONS) == set(ACTIVATIONS)


@pytest.mark.parametrize("name", list(ACTIVATIONS))
def test_activation_forward_and_backward_equal_torch(name):
    x = np.random.default_rng(2).standard_normal((8, 5)) * 3
    dout = np.random.default_rng(3).standard_normal((8, 5))
    out, cache = ACTIVATIONS[name].forward(x)
    xt = torch.tensor(x, requires_grad=True)
    yt = TORCH_ACTIVATIONS[name](xt)
    yt.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, yt.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(ACTIVATIONS[name].backward(dout, cache), xt.grad.numpy(), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_gradients_match_centred_differences(name):
    rng = np.random.default_rng(4)
    logits, y = rng.standard_normal((6, 4)), rng.integers(0, 4, 6)
    _, dlogits = LOSSES[name](logits, y)
    assert rel_error(dlogits, numerical_gradient(lambda: LOSSES[name](logits, y)[0], logits)) < 1e-7


def test_cross_entropy_equals_torch_and_survives_huge_logits():
    rng = np.random.default_rng(5)
    logits, y = rng.standard_normal((7, 10)) * 5, rng.integers(0, 10, 7)
    loss, dlogits = LOSSES["cross_entropy"](logits, y)
    lt = torch.tensor(logits, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(lt, torch.tensor(y))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(dlogits, lt.grad.numpy(), atol=1e-12)
    huge_loss, huge_grad = LOSSES["cross_entropy"](logits * 1e4, y)
    assert np.isfinite(huge_loss) and np.isfinite(huge_grad).all()


def test_squared_error_equals_torch():
    rng = np.random.default_rng(6)
    logits, y = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    loss, dlogits = LOSSES["squared_error"](logits, y)
    lt = torch.tensor(logits, requires_grad=True)
    onehot = torch.nn.functional.one_hot(torch.tensor(y), 3).double()
    ref = ((torch.softmax(lt, 1) - onehot) ** 2).sum(1).mean()
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    np.testing.assert_allclose(dlogits, lt.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_whole_mlp_gradients_with_l2_equal_torch_autograd(activation):
    rng = np.random.default_rng(7)
    net = mlp((12, 8, 6, 4), activation, "he", rng, dtype=np.float64)
    x, y, l2 = rng.standard_normal((9, 12)), rng.integers(0, 4, 9), 0.01
    loss, grads = loss_and_grads(net, x, y, LOSSES["cross_entropy"], l2)

    params = {k: torch.tensor(v, requires_grad=True) for k, v in net.params().items()}
    h = torch.tensor(x)
    for i in (0, 2, 4):
        h = h @ params[f"{i}.w"] + params[f"{i}.b"]
        if i < 4:
            h = TORCH_ACTIVATIONS[activation](h)
    data_loss = torch.nn.functional.cross_entropy(h, torch.tensor(y))
    penalty = 0.5 * l2 * sum((params[f"{i}.w"] ** 2).sum() for i in (0, 2, 4))
    (data_loss + penalty).backward()
    assert loss == pytest.approx(data_loss.item(), rel=1e-12)
    assert set(grads) == set(params)
    for name, tensor in params.items():
        np.testing.assert_allclose(grads[name], tensor.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)
