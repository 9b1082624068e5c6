"""resnet_norms: the norms against torch, the 6n+2 ResNet and its pretrained weights, the image folders,
Grad-CAM against the grad-cam package, and train.py end to end (smoke, resume, one-line errors)."""
import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from common.errors import UserError
from common.pretrained import (PRETRAINED_MEAN, PRETRAINED_STD, is_published, map_pretrained_keys, published_resnet,
                               read_published_resnet)
from resnet_norms import data as rdata
from resnet_norms.gradcam import central_fraction, grad_cam
from resnet_norms.model import ResNetConfig, ShortcutA, build_resnet, model_from_checkpoint, pretrained_resnet
from resnet_norms.norms import (NORMS, TORCH_COUNTERPARTS, BatchInstanceNorm, clip_gates, make_norm,
                                parameter_groups)
from tests.conftest import REPO, run_script

SHARED = REPO.parent / "shared" / "data"
PRETRAINED = SHARED / "pretrained" / "cifar10_resnet"


# norms against torch ---------------------------------------------------------------------------------

def _pair(name: str, c: int = 6, groups: int = 3, hw=(5, 4)):
    torch.manual_seed(0)
    ours, theirs = make_norm(name, c, groups).double(), TORCH_COUNTERPARTS[name](c, groups, hw).double()
    if name != "none":
        with torch.no_grad():
            ours.weight.uniform_(0.5, 1.5)
            ours.bias.uniform_(-0.5, 0.5)
            weight = ours.weight.view(-1, 1, 1).expand(c, *hw) if name == "ln" else ours.weight
            bias = ours.bias.view(-1, 1, 1).expand(c, *hw) if name == "ln" else ours.bias
            theirs.weight.copy_(weight)
            theirs.bias.copy_(bias)
    return ours, theirs


def _forward_backward(module, x, upstream):
    x = x.clone().requires_grad_(True)
    out = module(x)
    out.backward(upstream)
    grads = [x.grad] + [p.grad.clone() for p in module.parameters()]
    module.zero_grad()
    return out.detach(), grads


@pytest.mark.parametrize("name", sorted(TORCH_COUNTERPARTS))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_each_norm_equals_torch_forward_and_backward(name, mode):
    ours, theirs = _pair(name)
    for step in range(3):   # three training steps move BN's running statistics first
        x = torch.randn(4, 6, 5, 4, dtype=torch.double) * 3 + step
        upstream = torch.randn_like(x)
        ours.train(mode == "train" or step < 2)
        theirs.train(mode == "train" or step < 2)
        out, grads = _forward_backward(ours, x, upstream)
        ref, ref_grads = _forward_backward(theirs, x, upstream)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(grads[0], ref_grads[0])
        for g, r in zip(grads[1:], ref_grads[1:]):
            torch.testing.assert_close(g, r.sum(dim=(1, 2)) if name == "ln" else r)   # LN's affine is per channel
    if name == "bn":
        torch.testing.assert_close(ours.running_mean, theirs.running_mean)
        torch.testing.assert_close(ours.running_var, theirs.running_var)
        assert int(ours.num_batches_tracked) == int(theirs.num_batches_tracked) == (3 if mode == "train" else 2)


def test_layer_norm_equals_group_norm_with_one_group():
    ours = make_norm("ln", 6)
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(ours(x), nn.GroupNorm(1, 6)(x))


def test_bin_is_its_formula_and_reduces_to_bn_and_in():
    torch.manual_seed(1)
    x = torch.randn(8, 4, 5, 5, dtype=torch.double)
    bin_ = BatchInstanceNorm(4).double()
    with torch.no_grad():
        bin_.weight.uniform_(0.5, 1.5)
        bin_.bias.uniform_(-1, 1)
        bin_.rho.copy_(torch.tensor([0.0, 0.3, 0.7, 1.0]))
    bn = nn.BatchNorm2d(4, affine=False).double()
    inorm = nn.InstanceNorm2d(4, affine=False).double()
    rho, w, b = (t.detach().view(1, -1, 1, 1) for t in (bin_.rho, bin_.weight, bin_.bias))
    torch.testing.assert_close(bin_(x), w * (rho * bn(x) + (1 - rho) * inorm(x)) + b)
    torch.testing.assert_close(bin_.running_mean, bn.running_mean)
    bin_.eval()
    bn.eval()
    torch.testing.assert_close(bin_(x), w * (rho * bn(x) + (1 - rho) * inorm(x)) + b)
    for rho_value, reference in ((1.0, nn.BatchNorm2d(4).double()), (0.0, nn.InstanceNorm2d(4, affine=True).double())):
        gate = BatchInstanceNorm(4).double()
        gate.rho.data.fill_(rho_value)
        torch.testing.assert_close(gate(x), reference(x))


def test_bin_gates_are_clipped_after_each_step_and_kept_out_of_weight_decay():
    model = build_resnet(n=1, norm="bin", widths=(4, 4, 8))
    groups = parameter_groups(model, 5e-4)
    assert groups[1]["weight_decay"] == 0.0 and all(p.shape == (p.numel(),) for p in groups[1]["params"])
    gate_ids = {id(m.rho) for m in model.modules() if isinstance(m, BatchInstanceNorm)}
    assert gate_ids == {id(p) for p in groups[1]["params"]}
    assert not gate_ids & {id(p) for p in groups[0]["params"]}
    optimizer = torch.optim.SGD(groups, lr=10.0)
    optimizer.register_step_post_hook(lambda *_: clip_gates(model))
    for sign in (1, -1):
        model(torch.randn(4, 3, 8, 8)).sum().mul(sign).backward()
        optimizer.step()
        optimizer.zero_grad()
        rhos = torch.cat([m.rho.detach() for m in model.modules() if isinstance(m, BatchInstanceNorm)])
        assert rhos.min() >= 0 and rhos.max() <= 1 and ((rhos == 0) | (rhos == 1)).any()


def test_group_norm_rejects_groups_that_do_not_divide():
    with pytest.raises(UserError, match="does not divide"):
        make_norm("gn", 16, 3)
    with pytest.raises(UserError, match="--groups 3 does not divide"):
        ResNetConfig(norm="gn", groups=3)


# the model ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", list(NORMS))
def test_forward_shapes_and_depth_for_every_norm_and_shortcut(norm):
    for shortcut in ("A", "B"):
        model = build_resnet(n=2, norm=norm, shortcut=shortcut, groups=4, num_classes=7, image_size=8,
                             widths=(4, 8, 8))
        assert model(torch.randn(2, 3, 8, 8)).shape == (2, 7)
        assert model.feature_maps(torch.randn(1, 3, 8, 8)).shape == (1, 8, 2, 2)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
        assert len(convs) + 1 == model.config.depth == 14                  # 3x3 convs + the linear head


def test_resnet20_parameter_counts_for_shortcuts_a_and_b():
    a, b = build_resnet(n=3, shortcut="A"), build_resnet(n=3, shortcut="B")
    count = sum(p.numel() for p in a.parameters())
    assert count == 269_722          # He et al.'s "0.27M"
    assert sum(p.numel() for p in b.parameters()) - count == 16 * 32 + 2 * 32 + 32 * 64 + 2 * 64


def test_shortcut_a_subsamples_and_zero_pads():
    x = torch.randn(2, 4, 6, 6)
    out = ShortcutA(4, 8, 2)(x)
    assert out.shape == (2, 8, 3, 3)
    torch.testing.assert_close(out[:, 2:6], x[:, :, ::2, ::2])
    assert out[:, :2].abs().sum() == 0 and out[:, 6:].abs().sum() == 0


def test_config_round_trip_and_errors():
    config = ResNetConfig(n=9, norm="gn", groups=4, shortcut="B", num_classes=25, image_size=256)
    assert ResNetConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.describe() == "ResNet-56 gn G=4 shortcut B"
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.n = 3                                            # frozen
    with pytest.raises(UserError, match="cannot be halved"):
        ResNetConfig(image_size=30)
    with pytest.raises(UserError, match="no field"):
        ResNetConfig.from_dict({"n": 3, "depth": 20})


def _reference_resnet(n: int) -> nn.Module:
    """The published checkpoints' own code (akamaster/pytorch_resnet_cifar10, option A), condensed."""
    class Block(nn.Module):
        def __init__(self, c_in, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.pad = planes // 4 if (stride != 1 or c_in != planes) else None

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            short = x if self.pad is None else nn.functional.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
            return torch.relu(out + short)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1, self.bn1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16)
            self.layer1 = nn.Sequential(*[Block(16, 16, 1) for _ in range(n)])
            self.layer2 = nn.Sequential(Block(16, 32, 2), *[Block(32, 32, 1) for _ in range(n - 1)])
            self.layer3 = nn.Sequential(Block(32, 64, 2), *[Block(64, 64, 1) for _ in range(n - 1)])
            self.linear = nn.Linear(64, 10)

        def forward(self, x):
            x = self.layer3(self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x))))))
            return self.linear(x.mean(dim=(2, 3)))
    return Net()


def _published_file(tmp_path: Path, n: int, drop: str | None = None) -> tuple[Path, nn.Module]:
    torch.manual_seed(n)
    reference = _reference_resnet(n)
    for module in reference.modules():   # non-trivial running statistics
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = {f"module.{k}": v for k, v in reference.state_dict().items()
             if not k.endswith("num_batches_tracked") and k != drop}
    path = tmp_path / f"resnet{6 * n + 2}.th"
    torch.save({"state_dict": state, "best_prec1": 90.0}, path)
    return path, reference.eval()


def test_published_layout_loads_through_the_key_mapping_and_computes_the_same(tmp_path):
    path, reference = _published_file(tmp_path, 2)
    published = read_published_resnet(path)
    assert published.depth == 14 and published.best_prec1 == 90.0 and published.mean == PRETRAINED_MEAN
    model = pretrained_resnet(published)
    assert model.config.describe() == "ResNet-14 bn shortcut A" and not model.training
    x = torch.randn(3, 3, 32, 32)
    torch.testing.assert_close(model(x), reference(x))
    assert map_pretrained_keys({"module.layer3.1.bn2.running_var": 0})["stages.2.1.norm2.running_var"] == 0
    payload = torch.load(path, weights_only=True)   # a file already read (dfad_kd's teacher files): the same check
    assert is_published(payload) and not is_published({"model_config": {}, "model": {}, "state_dict": {}})
    torch.testing.assert_close(pretrained_resnet(published_resnet(payload, path))(x), reference(x))


def test_wrong_or_corrupt_pretrained_files_are_one_line_errors(tmp_path):
    path, _ = _published_file(tmp_path, 1, drop="linear.weight")
    with pytest.raises(UserError, match="does not fit ResNet-8.*missing.*head.weight"):
        pretrained_resnet(read_published_resnet(path))
    other = tmp_path / "other.th"
    torch.save({"state_dict": {"module.fc.weight": torch.zeros(2, 2)}}, other)
    with pytest.raises(UserError, match="is not a CIFAR ResNet"):
        read_published_resnet(other)
    corrupt = tmp_path / "corrupt.th"
    corrupt.write_bytes(path.read_bytes()[:500])
    with pytest.raises(UserError, match="corrupt checkpoint"):
        read_published_resnet(corrupt)
    with pytest.raises(UserError, match="no pretrained checkpoint"):
        read_published_resnet(tmp_path / "absent.th")


def _pretrained_accuracy(name: str) -> float:
    from common.formats import read_cifar_batch
    from common.images import normalise, to_nchw

    images, labels = read_cifar_batch(SHARED / "cifar-10-batches-py" / "test_batch")
    x = normalise(to_nchw(images), PRETRAINED_MEAN, PRETRAINED_STD)
    model = pretrained_resnet(read_published_resnet(PRETRAINED / name))
    with torch.no_grad():
        pred = torch.cat([model(x[i:i + 250]).argmax(1) for i in range(0, len(x), 250)])
    return (pred.numpy() == labels).mean()


@pytest.mark.skipif(not (PRETRAINED / "resnet20-12fca82f.th").exists(), reason="shared pretrained files absent")
def test_pretrained_resnet20_scores_its_published_figure_on_the_shared_subset():
    assert _pretrained_accuracy("resnet20-12fca82f.th") == pytest.approx(0.915, abs=0.001)


@pytest.mark.slow
@pytest.mark.skipif(not (PRETRAINED / "resnet56-4bfd9763.th").exists(), reason="shared pretrained files absent")
def test_pretrained_resnet56_scores_its_published_figure_on_the_shared_subset():
    assert _pretrained_accuracy("resnet56-4bfd9763.th") == pytest.approx(0.926, abs=0.001)


# image folders -----------------------------------------------------------------------------------------

def _write_images(folder: Path, count: int, colour, mode: str = "RGB", size=(40, 30)):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        value = colour if mode == "RGB" else colour[0]
        Image.new(mode, size, value).save(folder / f"image_{i:04d}.jpg")


def test_birds_layout_with_train_and_valid_carves_a_stratified_test(tmp_path):
    root = tmp_path / "indian_birds"
    for k, name in enumerate(["Cattle_Egret", "Indian_Peacock", "Ruddy_Shelduck"]):
        _write_images(root / "train" / name, 20, (80 * k, 50, 200))
        _write_images(root / "valid" / name, 4, (80 * k, 50, 200))
    found = rdata.load_folder_set(root, "birds", size=16, split=(0.7, 0.15, 0.15), seed=0, cache_dir=tmp_path / "c")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (found["splits"][s] for s in rdata.SPLITS)
    assert x_tr.shape[1:] == (16, 16, 3) and x_tr.dtype == np.uint8
    assert len(y_va) == 12 and np.bincount(y_va).tolist() == [4, 4, 4]       # the user's valid split, kept
    # test: 15/(70+15) of each class's 20 training images, rounded
    assert np.bincount(y_te).tolist() == [4, 4, 4] and np.bincount(y_tr).tolist() == [16, 16, 16]
    assert "test carved" in found["source"]


def test_caltech_layout_classes_grayscale_and_cache(tmp_path, monkeypatch):
    root = tmp_path / "caltech101" / "101_ObjectCategories"
    _write_images(root / "emu", 10, (200, 10, 10))
    _write_images(root / "ibis", 10, (90, 90, 90), mode="L")                  # grayscale JPEGs
    _write_images(root / "BACKGROUND_Google", 3, (0, 0, 0))
    _write_images(root / "rooster", 10, (10, 200, 10))
    data = rdata.load_data("caltech101", "real", tmp_path, image_size=8, classes=["emu", "ibis"],
                           cache_dir=tmp_path / "cache")
    assert data.classes == ["emu", "ibis"] and sum(data.sizes().values()) == 20
    assert data.data.x_train.shape[1:] == (3, 8, 8)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 1
    monkeypatch.setattr(rdata, "decode_image", lambda *a: (_ for _ in ()).throw(AssertionError("re-decoded")))
    again = rdata.load_data("caltech101", "real", tmp_path, image_size=8, classes=["emu", "ibis"],
                            cache_dir=tmp_path / "cache")
    torch.testing.assert_close(again.data.x_test, data.data.x_test)
    with pytest.raises(UserError, match="--classes dodo not found"):
        rdata.load_data("caltech101", "real", tmp_path, image_size=8, classes=["dodo"], cache_dir=tmp_path / "c")


@pytest.mark.skipif(not (SHARED / "caltech101" / "101_ObjectCategories").is_dir(), reason="shared Caltech-101 absent")
def test_the_shared_caltech101_birds_load(tmp_path):
    data = rdata.load_data("caltech101", "real", SHARED, image_size=32, cache_dir=tmp_path)
    assert data.classes == ["emu", "flamingo", "flamingo_head", "ibis", "pigeon", "rooster"]
    assert sum(data.sizes().values()) == 339 and data.data.x_train.shape[1:] == (3, 32, 32)   # grey ones as RGB
    counts = np.bincount(data.split("test")[1].numpy(), minlength=6)
    assert counts.min() >= 6                                                # stratified: every class in test


def test_unreadable_images_are_skipped_and_counted(tmp_path, capsys):
    root = tmp_path / "indian_birds"
    _write_images(root / "a", 8, (200, 0, 0))
    _write_images(root / "b", 8, (0, 0, 200))
    (root / "b" / "broken.jpg").write_bytes(b"not a jpeg")
    found = rdata.load_folder_set(root, "birds", size=8, split=(0.5, 0.25, 0.25), seed=0, cache_dir=tmp_path / "c")
    assert sum(len(y) for _, y in found["splits"].values()) == 16
    assert len(found["skipped"]) == 1 and "1 unreadable image(s) skipped" in found["source"]
    assert "skipped 1 unreadable image(s), e.g." in capsys.readouterr().out


def test_empty_class_folder_is_an_error(tmp_path):
    root = tmp_path / "indian_birds"
    _write_images(root / "a", 4, (200, 0, 0))
    (root / "b").mkdir()
    with pytest.raises(UserError, match="class folder .*b has no images"):
        rdata.scan_folder_set(root)


def test_stratified_split_keeps_class_ratios():
    labels = np.repeat(np.arange(4), 20)
    parts = rdata.stratified_split(labels, (0.7, 0.15, 0.15), seed=3)
    assert sorted(np.concatenate(parts).tolist()) == list(range(80))
    assert [np.bincount(labels[p]).tolist() for p in parts] == [[14] * 4, [3] * 4, [3] * 4]
    assert rdata.parse_split("70:15:15") == pytest.approx((0.7, 0.15, 0.15))
    with pytest.raises(UserError):
        rdata.parse_split("70:30")


def test_generated_birds_are_deterministic_and_learnable_shapes():
    a, la = rdata.generated_birds(24, seed=1, per_class=3)
    b, lb = rdata.generated_birds(24, seed=1, per_class=3)
    assert a.shape == (21, 24, 24, 3) and np.array_equal(a, b) and np.array_equal(la, lb)
    assert np.bincount(la).tolist() == [3] * 7
    # a nearest-class-mean classifier on the centre pixels already beats chance (1/7) clearly
    x, y = rdata.generated_birds(32, seed=0, per_class=40)
    feats = x[:, 8:24, 8:24].reshape(len(x), -1, 3).astype(float)
    feats = np.concatenate([np.sort(feats[..., c], axis=1)[:, ::16] for c in range(3)], axis=1)
    train, test = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    means = np.stack([feats[train & (y == k)].mean(0) for k in range(7)])
    pred = np.argmin(((feats[test][:, None] - means[None]) ** 2).sum(-1), axis=1)
    assert (pred == y[test]).mean() > 0.4


# Grad-CAM ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["bn", "gn"])
def test_grad_cam_equals_the_grad_cam_package(norm):
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = build_resnet(n=1, norm=norm, groups=4, num_classes=5, image_size=16).eval()
    x = torch.randn(6, 3, 16, 16)
    targets = torch.tensor([0, 1, 2, 3, 4, 0])
    ours, logits = grad_cam(model, model.gradcam_layer(), x, targets)
    package = GradCAM(model=model, target_layers=[model.gradcam_layer()])
    reference = package(input_tensor=x, targets=[ClassifierOutputTarget(int(t)) for t in targets])
    np.testing.assert_allclose(ours.numpy(), reference, atol=1e-5)
    default, _ = grad_cam(model, model.gradcam_layer(), x)          # default target: the prediction
    np.testing.assert_allclose(default.numpy(), package(input_tensor=x, targets=None), atol=1e-5)
    assert logits.shape == (6, 5) and not model.training


def test_central_fraction():
    maps = np.zeros((4, 8, 8), dtype=np.float32)
    maps[0] = 1.0                       # uniform: a quarter of the mass in the central quarter
    maps[1, 2:6, 2:6] = 1.0             # all of it in the centre
    maps[2, 0, 0] = 1.0                 # none of it
    np.testing.assert_allclose(central_fraction(maps), [0.25, 1.0, 0.0, np.nan])   # an all-zero map: undefined


# train.py end to end ---------------------------------------------------------------------------------------

ARTEFACTS = ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "curves.png", "confusion.png",
             "gradcam_correct.png", "gradcam_incorrect.png")


@pytest.mark.slow
def test_smoke_run_writes_every_artefact_and_metric(tmp_path):
    out = tmp_path / "run"
    done = run_script(str(REPO / "resnet_norms" / "train.py"), "--smoke", "--norm", "bin", "--out", str(out),
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    for name in ARTEFACTS:
        assert (out / name).stat().st_size > 0, name
    summary = json.loads((out / "summary.json").read_text())
    for split in ("train", "val", "test"):
        for metric in ("acc", "micro_f1", "macro_f1"):
            assert 0 <= summary[f"{split}_{metric}"] <= 1
        assert summary[f"{split}_micro_f1"] == pytest.approx(summary[f"{split}_acc"])   # single-label: micro F1 = acc
    assert summary["gradcam_n_correct"] + summary["gradcam_n_incorrect"] == summary["sizes"]["test"]
    assert summary["gradcam_classes"] == list(rdata.SEED_CLASSES)
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["rho_mean"] <= 1 for r in records)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    model = model_from_checkpoint(state)
    assert model.config.norm == "bin" and model.config.num_classes == 7


@pytest.mark.slow
def test_resume_after_an_interruption_ends_with_the_same_metrics(tmp_path):
    from resnet_norms import train

    common = ["--smoke", "--norm", "gn", "--groups", "4", "--seed", "3"]
    straight = train.main([*common, "--out", str(tmp_path / "straight")])
    train.main([*common, "--epochs", "1", "--out", str(tmp_path / "resumed")])
    resumed = train.main([*common, "--resume", "--out", str(tmp_path / "resumed")])
    for key in ("train_acc", "val_acc", "test_acc", "test_macro_f1", "train_loss"):
        assert resumed[key] == pytest.approx(straight[key], abs=1e-6), key


@pytest.mark.parametrize("flags, message", [
    (["--norm", "gn", "--groups", "3"], "--groups 3 does not divide"),
    (["--dataset", "caltech101", "--image-size", "30", "--data", "generated"], "cannot be halved"),
    (["--dataset", "cifar10", "--image-size", "64"], "CIFAR-10's images are 32x32"),
    (["--split", "70:30"], "--split 70:30"),
])
def test_bad_flags_are_one_line_with_exit_2(tmp_path, capsys, flags, message):
    from common.errors import run_cli
    from resnet_norms import train

    with pytest.raises(SystemExit) as exit_info:
        run_cli(train.main, [*flags, "--epochs", "1", "--data", "generated", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err, err
    assert err.strip().count("\n") == 0 and not (tmp_path / "r" / "checkpoint.pt").exists()


def test_report_runs_parse_and_cover_every_norm():
    from resnet_norms import report, train

    for quick in (True, False):
        specs = report.runs(quick)
        for spec in specs:
            train.build_parser().parse_args(list(spec.args))
        assert {n for n in NORMS} <= {spec.name.split("_")[1] for spec in specs}
    assert len(report.runs(False)) == 2 * len(NORMS) * 3 + 1


@pytest.mark.slow
def test_empty_class_folder_from_the_command_line_is_exit_2(tmp_path):
    root = tmp_path / "data" / "indian_birds"
    _write_images(root / "a", 6, (200, 0, 0))
    (root / "b").mkdir()
    done = run_script(str(REPO / "resnet_norms" / "train.py"), "--data", "real", "--data-root", str(tmp_path / "data"),
                      "--image-size", "8", "--out", str(tmp_path / "r"))
    assert done.returncode == 2 and "has no images" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_reproduce_smoke_builds_the_report(tmp_path):
    done = run_script("reproduce.py", "resnet_norms", "--smoke", "--runs-dir", str(tmp_path / "runs"),
                      "--reports-dir", str(tmp_path / "reports"), timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    report = (tmp_path / "reports" / "resnet_norms.md").read_text()
    for norm in NORMS:
        assert f"| {norm} | 1 |" in report
    assert "central share, correct" in report and "preset-seed" in report
    assert (tmp_path / "reports" / "resnet_norms" / "birds_gradcam_incorrect.png").exists()
