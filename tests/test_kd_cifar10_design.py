"""kd_cifar10 part A: FlexibleMLP / FlexibleCNN, data and augmentations, gradient norms, transfer learning,
and train.py end to end (smoke, resume, one-line errors)."""
import json
import pickle

import numpy as np
import pytest
import torch
import torchvision

from common import download
from common.datasets import CIFAR10_NAMES
from common.classify import evaluate_classifier
from common.errors import UserError, run_cli
from common.formats import write_cifar_batch
from common.images import AUGMENTATIONS, cutout, load_tensors, random_flip, shift_crop
from common.models import count_parameters
from common.schedules import SCHEDULES
from common.training import tensor_batches
from kd_cifar10 import train
from kd_cifar10.gradients import GradientMonitor
from kd_cifar10.model import (BLOCKS, NORMS, CNNConfig, FlexibleCNN, build_model, model_config,
                              model_from_checkpoint)
from kd_cifar10.transfer import TransferConfig, TransferResNet18, build_transfer_model
from tests.conftest import REPO, run_script

TINY = dict(layers=(1, 1, 1, 1), width=4)


# models --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("block", list(BLOCKS))
@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("use_skip", [True, False])
def test_cnn_forward_shapes_for_every_config(block, norm, use_skip):
    model = build_model("cnn", block=block, norm=norm, use_skip=use_skip, **TINY).eval()
    assert model(torch.randn(3, 3, 32, 32)).shape == (3, 10)
    grey = build_model("cnn", block=block, norm=norm, use_skip=use_skip, in_channels=1, image_size=28, **TINY)
    assert grey(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert model.features(torch.randn(1, 3, 32, 32)).shape == (1, 8 * 4 * BLOCKS[block].expansion)


@pytest.mark.parametrize("norm", list(NORMS))
@pytest.mark.parametrize("use_skip", [True, False])
def test_mlp_forward_shapes(norm, use_skip):
    model = build_model("mlp", depth=3, width=16, use_skip=use_skip, norm=norm, in_features=3 * 8 * 8)
    assert model(torch.randn(4, 3, 8, 8)).shape == (4, 10)
    assert len(model.layer_groups()) == 4  # three hidden layers and the head


def test_resnet18_cifar_has_the_known_parameter_count():
    resnet18 = FlexibleCNN(CNNConfig())
    assert count_parameters(resnet18) == 11_173_962  # the CIFAR ResNet-18 figure (~11.17M)
    # torchvision's ImageNet ResNet-18 differs only in the 7x7 stem conv and the 1000-way head
    tv = torchvision.models.resnet18(num_classes=10)
    assert count_parameters(tv) - count_parameters(resnet18) == (7 * 7 - 3 * 3) * 3 * 64
    # the shortcuts' parameters are the 1x1 projections at stages 2-4 (conv + BatchNorm)
    plain = FlexibleCNN(CNNConfig(use_skip=False))
    assert count_parameters(resnet18) - count_parameters(plain) == sum(c * 2 * c + 2 * 2 * c for c in (64, 128, 256))


def test_bottleneck_resnet50_layout_parameter_count():
    resnet50 = FlexibleCNN(CNNConfig(layers=(3, 4, 6, 3), block="bottleneck"))
    tv = torchvision.models.resnet50(num_classes=10)
    assert count_parameters(tv) - count_parameters(resnet50) == (7 * 7 - 3 * 3) * 3 * 64


def test_block_computes_relu_of_residual_plus_identity_and_no_skip_drops_it():
    torch.manual_seed(0)
    skip = BLOCKS["basic"](8, 8, 1, "batch", True).eval()
    plain = BLOCKS["basic"](8, 8, 1, "batch", False).eval()
    plain.load_state_dict(skip.state_dict())  # identity shortcut: no parameters of its own
    x = torch.randn(2, 8, 6, 6)
    residual = skip.residual(x)
    torch.testing.assert_close(skip(x), torch.relu(residual + x))
    torch.testing.assert_close(plain(x), torch.relu(residual))
    assert plain.shortcut is None


def test_no_skip_network_is_the_same_network_minus_shortcuts():
    torch.manual_seed(0)
    skip = FlexibleCNN(CNNConfig(**TINY)).eval()
    plain = FlexibleCNN(CNNConfig(use_skip=False, **TINY)).eval()
    missing, unexpected = plain.load_state_dict(skip.state_dict(), strict=False)
    assert not missing and all(".shortcut." in key for key in unexpected) and unexpected
    x = torch.randn(2, 3, 32, 32)
    assert not torch.allclose(skip(x), plain(x))


def test_checkpoint_config_rebuilds_the_model():
    model = build_model("cnn", block="bottleneck", norm="group", use_skip=False, **TINY).eval()
    rebuilt = model_from_checkpoint({"model_config": model_config(model), "model": model.state_dict()}).eval()
    x = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x), model(x))


def test_bad_config_is_a_user_error():
    with pytest.raises(UserError, match="four block counts"):
        build_model("cnn", layers=(2, 2, 2))
    with pytest.raises(UserError, match="unknown norm"):
        build_model("mlp", norm="weird")


# data and augmentations ----------------------------------------------------------------------------

def test_load_tensors_reads_real_cifar_files_and_normalises(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    train_images = rng.integers(0, 256, (12, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(folder / "data_batch_1", train_images, np.arange(12) % 10)
    write_cifar_batch(folder / "test_batch", rng.integers(0, 256, (5, 32, 32, 3), dtype=np.uint8), np.arange(5))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in CIFAR10_NAMES]}))
    data = load_tensors("cifar10", "real", tmp_path)
    assert data.x_train.shape == (12, 3, 32, 32) and data.x_test.shape == (5, 3, 32, 32)
    assert data.source.startswith("real") and data.classes == CIFAR10_NAMES
    torch.testing.assert_close(data.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(data.x_train.std(dim=(0, 2, 3)), torch.ones(3), atol=1e-4, rtol=0)
    # channel order survives: pixel (0, 0) of image 0 back in [0, 1]
    np.testing.assert_allclose(data.images(data.x_train[:1])[0, 0, 0], train_images[0, 0, 0] / 255, atol=1e-5)


def test_load_tensors_mnist_stand_in_is_one_channel(tmp_path):
    data = load_tensors("mnist", "generated", tmp_path, smoke=True)
    assert data.x_train.shape[1:] == (1, 28, 28) and data.y_train.dtype == torch.int64


@pytest.mark.parametrize("name", list(AUGMENTATIONS))
def test_augmentations_keep_shape_and_are_deterministic_given_the_seed(name):
    x = torch.randn(16, 3, 32, 32)
    first = AUGMENTATIONS[name](x, torch.Generator().manual_seed(1))
    again = AUGMENTATIONS[name](x, torch.Generator().manual_seed(1))
    other = AUGMENTATIONS[name](x, torch.Generator().manual_seed(2))
    assert first.shape == x.shape
    torch.testing.assert_close(first, again)
    assert torch.equal(first, x) == (name == "none") and torch.equal(other, x) == (name == "none")
    if name != "none":
        assert not torch.equal(first, other)


def test_crop_with_zero_shift_is_the_input_and_a_shift_moves_pixels_with_zero_fill():
    x = torch.randn(2, 3, 8, 8)
    zero = torch.zeros(2, dtype=torch.long)
    torch.testing.assert_close(shift_crop(x, zero, zero), x)
    down = shift_crop(x, torch.tensor([-1, -1]), zero)  # crop window one row up: content moves down
    torch.testing.assert_close(down[:, :, 1:], x[:, :, :-1])
    assert torch.all(down[:, :, 0] == 0)
    right_edge = shift_crop(x, zero, torch.tensor([4, 4]))
    torch.testing.assert_close(right_edge[..., :4], x[..., 4:])
    assert torch.all(right_edge[..., 4:] == 0)


def test_flip_and_cutout_by_hand():
    x = torch.randn(64, 1, 4, 6)
    flipped = random_flip(x, torch.Generator().manual_seed(0))
    is_flipped = torch.tensor([torch.equal(f, o.flip(-1)) for f, o in zip(flipped, x)])
    is_same = torch.tensor([torch.equal(f, o) for f, o in zip(flipped, x)])
    assert torch.all(is_flipped | is_same) and 10 < is_flipped.sum() < 54
    ones = torch.ones(200, 1, 16, 16)
    holes = (cutout(ones, torch.Generator().manual_seed(0), size=4) == 0).sum(dim=(1, 2, 3))
    assert holes.max() == 16 and holes.min() >= 4  # a 4x4 square, clipped at the border


# gradient norms ------------------------------------------------------------------------------------

def test_gradient_monitor_matches_norms_computed_by_hand():
    torch.manual_seed(0)
    model = build_model("mlp", depth=3, width=8, norm="none", in_features=5)
    monitor = GradientMonitor(model.layer_groups())
    expected = []
    for _ in range(3):
        monitor.next_step()
        model.zero_grad()
        model(torch.randn(4, 5)).square().mean().backward()
        expected.append([torch.sqrt(sum(p.grad.square().sum() for p in params)).item()
                         for _, params in model.layer_groups()])
    np.testing.assert_allclose(monitor.epoch_means(), np.mean(expected, axis=0), rtol=1e-5)
    assert monitor.names == ["fc1", "fc2", "fc3", "head"]


# transfer learning ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory):
    torch.manual_seed(3)
    path = tmp_path_factory.mktemp("weights") / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_pretrained_path_loads_the_backbone_and_frozen_trains_only_the_head(resnet18_file):
    model, label = build_transfer_model(str(resnet18_file), "frozen", num_classes=10, input_size=32)
    saved = torch.load(resnet18_file, weights_only=True)
    torch.testing.assert_close(model.net.layer3[1].conv2.weight, saved["layer3.1.conv2.weight"])
    trained = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trained == {"net.fc.weight", "net.fc.bias"} and "resnet18.pth" in label
    model.train()
    assert not model.net.bn1.training and model.net.fc.training  # frozen BatchNorm keeps its statistics
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    full, _ = build_transfer_model(str(resnet18_file), "full", num_classes=10, input_size=32)
    assert all(p.requires_grad for p in full.parameters())


def test_wrong_weights_file_is_a_user_error(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(UserError, match="not a torchvision resnet18 state_dict"):
        build_transfer_model(str(path), "full", 10, 32)
    with pytest.raises(UserError, match="no such file"):
        build_transfer_model(str(tmp_path / "absent.pth"), "full", 10, 32)


def test_transfer_model_rebuilds_from_its_checkpoint_config():
    model = TransferResNet18(TransferConfig(num_classes=10, input_size=40, finetune="frozen")).eval()
    rebuilt = model_from_checkpoint({"model_config": model_config(model), "model": model.state_dict()}).eval()
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x), model(x))


@pytest.mark.slow
def test_imagenet_weights_missing_offline_is_one_line_exit_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_hub"))
    monkeypatch.setattr(download, "reachable", lambda url, timeout=0: False)
    with pytest.raises(SystemExit) as exit_info:
        run_cli(train.main, ["--smoke", "--pretrained", "imagenet", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "torch hub cache" in err and "--pretrained PATH" in err
    assert not (tmp_path / "run").exists()


# train.py end to end -------------------------------------------------------------------------------

def _summary(out):
    return json.loads((out / "summary.json").read_text())


def test_parse_resolves_every_default(tmp_path):
    out = ["--out", str(tmp_path / "run")]
    assert train.parse(out).width == train.DEFAULT_WIDTH["cnn"] == 64
    assert train.parse([*out, "--model", "mlp"]).width == train.DEFAULT_WIDTH["mlp"] == 512
    assert train.parse([*out, "--width", "16"]).width == 16
    smoke = train.parse([*out, "--smoke", "--model", "mlp"])
    assert (smoke.epochs, smoke.batch_size, smoke.width, smoke.depth, smoke.device) == (2, 64, 32, 2, "cpu")
    assert "mlp4x512" in train.parse(["--model", "mlp"]).out.name     # the run's name from the resolved width


def test_smoke_mlp_on_mnist_in_process(tmp_path):
    out = tmp_path / "mlp"
    summary = train.main(["--smoke", "--model", "mlp", "--dataset", "mnist", "--no-skip", "--out", str(out)])
    assert summary["model_config"]["kind"] == "mlp" and summary["model_config"]["in_features"] == 784
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records[-1]["grad_norms"]) == len(summary["grad_layers"]) == 3
    steps = -(-summary["n_train"] // summary["batch_size"])          # per-step cosine (common.schedules) of --lr
    assert records[0]["lr"] == pytest.approx(summary["lr"] * SCHEDULES["cosine"](steps, 2 * steps), abs=1e-12)
    for name in ("curves.png", "gradient_norms.png", "augmentations.png", "checkpoint.pt"):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_smoke_pretrained_path_from_another_directory(tmp_path, resnet18_file):
    out = tmp_path / "transfer"
    done = run_script(str(REPO / "kd_cifar10/train.py"), "--smoke", "--pretrained", str(resnet18_file),
                      "--finetune", "frozen", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = _summary(out)
    assert summary["trainable_parameters"] == 512 * 10 + 10 and summary["init"] == "file resnet18.pth"
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    saved = torch.load(resnet18_file, weights_only=True)
    torch.testing.assert_close(state["model"]["net.layer1.0.conv1.weight"], saved["layer1.0.conv1.weight"])
    rebuilt = model_from_checkpoint(state)
    assert isinstance(rebuilt, TransferResNet18) and rebuilt.config.finetune == "frozen"


@pytest.mark.slow
def test_resume_gives_the_same_metrics_as_an_uninterrupted_run(tmp_path, monkeypatch):
    flags = ["--smoke", "--augment", "crop_flip_cutout", "--schedule", "cosine", "--epochs", "2"]
    train.main([*flags, "--out", str(tmp_path / "whole")])

    def interrupted_in_epoch_2(tensors, batch_size, *, seed, epoch):
        for index, batch in enumerate(tensor_batches(tensors, batch_size, seed=seed, epoch=epoch)):
            if epoch == 1 and index == 2:
                raise KeyboardInterrupt
            yield batch

    monkeypatch.setattr(train, "tensor_batches", interrupted_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.main([*flags, "--out", str(tmp_path / "parts")])
    monkeypatch.setattr(train, "tensor_batches", tensor_batches)
    train.main([*flags, "--resume", "--out", str(tmp_path / "parts")])

    def records(name):
        rows = [json.loads(line) for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in row.items() if k != "train_seconds"} for row in rows]

    assert records("whole") == records("parts") and len(records("whole")) == 2
    state = torch.load(tmp_path / "parts" / "checkpoint.pt", weights_only=True)
    model = model_from_checkpoint(state).eval()
    data = load_tensors("cifar10", "generated", tmp_path, smoke=True)
    acc = evaluate_classifier(model, data.x_test, data.y_test, len(data.classes), "cpu")["test_acc"]
    assert acc == pytest.approx(_summary(tmp_path / "parts")["test_acc"])


@pytest.mark.parametrize("flags, message", [
    (["--finetune", "frozen"], "--finetune: used only with --pretrained"),
    (["--input-size", "64"], "--input-size: used only with --pretrained"),
    (["--pretrained", "w.pth", "--no-skip", "--width", "8"], "--width / --use-skip / --no-skip: --pretrained trains"),
    (["--model", "mlp", "--block", "basic"], "--block: not used by --model mlp"),
    (["--depth", "3"], "--depth: not used by --model cnn"),
])
def test_a_flag_the_other_flags_leave_unused_is_refused(tmp_path, flags, message):
    with pytest.raises(UserError, match=message):
        train.parse(["--out", str(tmp_path / "run"), "--wandb", "off", "--threads", "1", *flags])
    assert train.parse(["--out", str(tmp_path / "run"), "--wandb", "off", "--threads", "1", "--pretrained", "w.pth",
                        "--finetune", "frozen", "--input-size", "64"]).finetune == "frozen"
