"""NumPy Conv2D / MaxPool / AvgPool against torch.nn.functional and centred differences."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.errors import UserError
from mnist_scratch.engine.conv import (avgpool_backward, avgpool_forward, col2im, conv2d_backward, conv2d_forward,
                                 im2col, maxpool_backward, maxpool_forward)
from mnist_scratch.engine.gradcheck import numerical_gradient_array, rel_error
from mnist_scratch.engine.losses import LOSSES
from mnist_scratch.engine.network import AvgPool2D, Activation, Conv2D, Dense, Flatten, MaxPool2D, Sequential
from mnist_scratch.engine.training import loss_and_grads


@pytest.mark.parametrize("stride,pad", [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_conv2d_equals_torch(stride, pad):
    rng = np.random.default_rng(stride * 10 + pad)
    x, w, b = rng.standard_normal((2, 3, 9, 8)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    out, cache = conv2d_forward(x, w, b, stride, pad)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)
    xt, wt, bt = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    ref = F.conv2d(xt, wt, bt, stride=stride, padding=pad)
    ref.backward(torch.tensor(dout))
    np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-12)
    for ours, theirs in ((dx, xt), (dw, wt), (db, bt)):
        np.testing.assert_allclose(ours, theirs.grad.numpy(), atol=1e-12)


def test_conv2d_gradients_match_centred_differences():
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((2, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3)), rng.standard_normal(3)
    out, cache = conv2d_forward(x, w, b, 2, 1)
    dout = rng.standard_normal(out.shape)
    dx, dw, db = conv2d_backward(dout, cache)
    for ours, param in ((dx, x), (dw, w), (db, b)):
        assert rel_error(ours, numerical_gradient_array(lambda: conv2d_forward(x, w, b, 2, 1)[0], param, dout)) < 1e-7


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), c> == <x, col2im(c)> for any x, c: the backward pass sums exactly the right terms."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))
    cols = im2col(x, 3, 2, 2, 1)
    c = rng.standard_normal(cols.shape)
    assert np.sum(cols * c) == pytest.approx(np.sum(x * col2im(c, x.shape, 3, 2, 2, 1)))


@pytest.mark.parametrize("kernel,stride", [(2, 2), (3, 1), (3, 2)])
def test_pools_equal_torch(kernel, stride):
    rng = np.random.default_rng(kernel + stride)
    x = rng.standard_normal((2, 3, 8, 7))
    for forward, backward, reference in ((maxpool_forward, maxpool_backward, F.max_pool2d),
                                         (avgpool_forward, avgpool_backward, F.avg_pool2d)):
        out, cache = forward(x, kernel, stride)
        dout = rng.standard_normal(out.shape)
        xt = torch.tensor(x, requires_grad=True)
        ref = reference(xt, kernel, stride)
        ref.backward(torch.tensor(dout))
        np.testing.assert_allclose(out, ref.detach().numpy(), atol=1e-12)
        np.testing.assert_allclose(backward(dout, cache), xt.grad.numpy(), atol=1e-12)


@pytest.mark.parametrize("forward,backward", [(maxpool_forward, maxpool_backward), (avgpool_forward, avgpool_backward)])
def test_pool_gradients_match_centred_differences(forward, backward):
    x = np.random.default_rng(3).permutation(2 * 2 * 6 * 6).reshape(2, 2, 6, 6) / 10.0  # distinct: no max ties
    out, cache = forward(x, 3, 2)
    dout = np.random.default_rng(4).standard_normal(out.shape)
    numerical = numerical_gradient_array(lambda: forward(x, 3, 2)[0], x, dout, h=1e-5)
    assert rel_error(backward(dout, cache), numerical) < 1e-7


def test_shape_errors_are_clear():
    with pytest.raises(UserError, match="input has 3 channels, the filters expect 2"):
        conv2d_forward(np.zeros((1, 3, 5, 5)), np.zeros((4, 2, 3, 3)), np.zeros(4))
    with pytest.raises(UserError, match="does not fit an input of 2"):
        maxpool_forward(np.zeros((1, 1, 2, 2)), 3)


def test_small_cnn_gradients_equal_torch_autograd():
    rng = np.random.default_rng(5)
    net = Sequential([Conv2D(1, 4, 3, "he", rng, pad=1, dtype=np.float64), Activation("relu"), MaxPool2D(2),
                      Conv2D(4, 6, 3, "he", rng, dtype=np.float64), Activation("relu"), AvgPool2D(2),
                      Flatten(), Dense(6, 5, "he", rng, dtype=np.float64)])
    x, y = rng.standard_normal((3, 1, 8, 8)), rng.integers(0, 5, 3)
    loss, grads = loss_and_grads(net, x, y, LOSSES["cross_entropy"])
    p = {k: torch.tensor(v, requires_grad=True) for k, v in net.params().items()}
    h = F.max_pool2d(torch.relu(F.conv2d(torch.tensor(x), p["0.w"], p["0.b"], padding=1)), 2)
    h = F.avg_pool2d(torch.relu(F.conv2d(h, p["3.w"], p["3.b"])), 2).flatten(1)
    ref = F.cross_entropy(h @ p["7.w"] + p["7.b"], torch.tensor(y))
    ref.backward()
    assert loss == pytest.approx(ref.item(), rel=1e-12)
    for name, tensor in p.items():
        np.testing.assert_allclose(grads[name], tensor.grad.numpy(), rtol=1e-9, atol=1e-12, err_msg=name)


def test_conv_init_scale_uses_the_filter_fan_in():
    layer = Conv2D(8, 64, 3, "he", np.random.default_rng(0), dtype=np.float64)
    assert layer.params["w"].shape == (64, 8, 3, 3)
    assert layer.params["w"].std() == pytest.approx(np.sqrt(2 / (8 * 9)), rel=0.05)
