"""Optimizers against torch.optim over several steps; schedules and inits by their formulas."""
import math

import numpy as np
import pytest
import torch

from common.schedules import SCHEDULES
from mnist_scratch.engine.init import INITS
from mnist_scratch.engine.optim import OPTIMIZERS, build_optimizer
from mnist_scratch.engine.training import SCHEDULE_NAMES

TORCH_OPTIMIZERS = {
    "sgd": lambda p, lr: torch.optim.SGD(p, lr=lr),
    "momentum": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9),
    "nesterov": lambda p, lr: torch.optim.SGD(p, lr=lr, momentum=0.9, nesterov=True),
    "rmsprop": lambda p, lr: torch.optim.RMSprop(p, lr=lr),
    "adam": lambda p, lr: torch.optim.Adam(p, lr=lr),
    "nadam": lambda p, lr: torch.optim.NAdam(p, lr=lr),
}


def test_every_optimizer_has_a_torch_reference():
    assert set(TORCH_OPTIMIZERS) == set(OPTIMIZERS)


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_matches_torch_over_ten_steps(name):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3))
    grads = [rng.standard_normal((4, 3)) for _ in range(10)]
    ours = OPTIMIZERS[name](0.01)
    state = ours.init_state(w)
    wt = torch.tensor(w.copy(), requires_grad=True)
    reference = TORCH_OPTIMIZERS[name]([wt], 0.01)
    for g in grads:
        w, state = ours.update(w, g, state)
        wt.grad = torch.tensor(g)
        reference.step()
    # torch keeps NAdam's running mu_product as a float32 tensor even for float64 parameters
    rtol = 1e-7 if name == "nadam" else 1e-10
    np.testing.assert_allclose(w, wt.detach().numpy(), rtol=rtol, atol=1e-12)


def test_build_optimizer_passes_only_accepted_options():
    assert build_optimizer("momentum", 0.1, momentum=0.5).momentum == 0.5
    assert isinstance(build_optimizer("adam", 0.1, momentum=0.5), OPTIMIZERS["adam"])


@pytest.mark.parametrize("name,expected", [
    ("constant", [0.1] * 6),
    ("step", [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]),
    ("exponential", [0.1 * 0.9 ** e for e in range(6)]),
    ("polynomial", [0.1 * (1 - e / 6) ** 2 for e in range(6)]),
    ("cosine", [0.1 * 0.5 * (1 + math.cos(math.pi * e / 6)) for e in range(6)]),
])
def test_schedule_values(name, expected):
    """The NumPy scripts' lr per epoch: the multiplier of common.schedules times the base lr."""
    assert [SCHEDULES[name](e, 6) * 0.1 for e in range(6)] == pytest.approx(expected)


def test_the_numpy_scripts_offer_the_five_epoch_schedules():
    assert set(SCHEDULE_NAMES) == {"constant", "step", "exponential", "polynomial", "cosine"} <= set(SCHEDULES)


@pytest.mark.parametrize("name,std", [("random", lambda i, o: 0.01), ("xavier", lambda i, o: math.sqrt(2 / (i + o))),
                                      ("he", lambda i, o: math.sqrt(2 / i))])
def test_init_scale(name, std):
    w = INITS[name](400, 300, np.random.default_rng(0))
    assert w.shape == (400, 300)
    assert w.std() == pytest.approx(std(400, 300), rel=0.02)
