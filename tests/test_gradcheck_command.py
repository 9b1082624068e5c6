"""The user-facing gradient check: passes on the engine, and fails loudly on a broken backward."""
import pytest

from common.errors import UserError
from mnist_scratch.engine.layers import ReLU
from mnist_scratch import gradcheck
from tests.conftest import REPO, run_script


@pytest.mark.slow
def test_gradcheck_command_passes_and_covers_every_component():
    done = run_script(str(REPO / "mnist_scratch" / "gradcheck.py"))
    assert done.returncode == 0, done.stderr
    for name in ("affine", "activation sigmoid", "loss squared_error", "conv2d", "maxpool", "avgpool", "CNN"):
        assert name in done.stdout
    assert "FAIL" not in done.stdout and "gradient checks passed" in done.stdout


def test_a_wrong_backward_is_reported(monkeypatch):
    monkeypatch.setattr(ReLU, "backward", staticmethod(lambda dout, cache: dout))  # forgets the mask
    with pytest.raises(UserError, match="gradient checks failed: .*activation relu/x"):
        gradcheck.main([])
