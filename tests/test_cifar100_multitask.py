"""cifar100_multitask: the hierarchy maps, the severity loss against hand computations, derived
predictions, metrics against scikit-learn, the sampler, the CIFAR-100 reader on files in the real
pickle format, the stand-in's hierarchy, resume, and one-line errors."""
import json
import pickle

import numpy as np
import pytest
import torch
from sklearn.metrics import balanced_accuracy_score
from torch.nn import functional as F

from cifar100_multitask import train as train_script
from cifar100_multitask.data import GROUPS, HIERARCHY, build_hierarchy, class_weighted_order, load_pooled, long_tail
from cifar100_multitask.metrics import consistency, macro_accuracy, minority_recall
from cifar100_multitask.model import MultiTaskConfig, MultiTaskLoss, MultiTaskNet, level_probabilities, \
    severity_cross_entropy, severity_matrix, tree_distance
from cifar100_multitask.hierarchy_data import hierarchical_images
from common.datasets import CIFAR100_FINE_NAMES, CIFAR100_SUPERCLASS_NAMES, REAL_SETS
from common.errors import UserError, run_cli
from tests.conftest import REPO, run_script

TINY_TREE = [np.array([0, 0, 1, 2]), np.array([0, 0, 1])]  # fine -> super -> group: 4 fine, 3 super, 2 groups


# --- the hierarchy ------------------------------------------------------------------------------
def test_every_fine_label_is_in_one_superclass_and_every_superclass_in_one_group():
    assert len(HIERARCHY.fine_names) == 100 and len(set(HIERARCHY.fine_names)) == 100
    assert HIERARCHY.fine_to_super.shape == (100,)
    assert np.bincount(HIERARCHY.fine_to_super, minlength=20).tolist() == [5] * 20   # CIFAR-100: 5 each
    assert HIERARCHY.super_to_group.shape == (20,) and set(HIERARCHY.super_to_group) == set(range(9))
    members = [m for group in GROUPS.values() for m in group]
    assert sorted(members) == sorted(CIFAR100_SUPERCLASS_NAMES)      # each superclass exactly once
    for group, supers in GROUPS.items():
        for name in supers:
            assert HIERARCHY.group_names[HIERARCHY.super_to_group[CIFAR100_SUPERCLASS_NAMES.index(name)]] == group
    labels = HIERARCHY.labels(np.arange(100))
    assert np.array_equal(labels["group"], HIERARCHY.super_to_group[HIERARCHY.fine_to_super])


def test_known_cifar100_memberships():
    def superclass(fine: str) -> str:
        return CIFAR100_SUPERCLASS_NAMES[HIERARCHY.fine_to_super[CIFAR100_FINE_NAMES.index(fine)]]
    assert superclass("apple") == "fruit_and_vegetables" and superclass("dolphin") == "aquatic_mammals"
    assert superclass("tractor") == "vehicles_2" and superclass("maple_tree") == "trees"


@pytest.mark.parametrize("groups, message", [
    ({**GROUPS, "extra": ("fish",)}, "fish \\(in 2\\)"),
    ({k: v for k, v in GROUPS.items() if k != "people"}, "people \\(in 0\\)"),
    ({**GROUPS, "odd": ("dragons",)}, "unknown superclass dragons"),
])
def test_a_broken_group_map_is_rejected(groups, message):
    with pytest.raises(UserError, match=message):
        build_hierarchy(groups)


# --- severity -----------------------------------------------------------------------------------
def test_tree_distance_by_hand():
    assert tree_distance(TINY_TREE, 0).tolist() == [[0, 1, 2, 3], [1, 0, 2, 3], [2, 2, 0, 3], [3, 3, 3, 0]]
    assert tree_distance(TINY_TREE, 1).tolist() == [[0, 2, 3], [2, 0, 3], [3, 3, 0]]
    assert tree_distance(TINY_TREE, 2).tolist() == [[0, 3], [3, 0]]
    fine = tree_distance(HIERARCHY.parents, 0)
    same_super = HIERARCHY.fine_to_super[:, None] == HIERARCHY.fine_to_super[None]
    assert (fine[same_super & ~np.eye(100, dtype=bool)] == 1).all() and (fine[~same_super] >= 2).all()


def test_severity_orders_the_mistakes():
    s = severity_matrix(TINY_TREE, 0, "linear")
    assert s[0, 0] == 1 and s[0, 0] < s[0, 1] < s[0, 2] < s[0, 3]    # same < superclass < group < other
    assert severity_matrix(TINY_TREE, 0, "exponential")[0].tolist() == [1, 2, 4, 8]


def test_severity_loss_against_a_hand_computation():
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0], [0.5, 0.5, 3.0, 0.0]], dtype=torch.float64)
    target = torch.tensor([0, 3])
    severity = torch.tensor(severity_matrix(TINY_TREE, 0, "linear"))   # rows [1,2,3,4],[2,1,3,4],[3,3,1,4],[4,4,4,1]
    expected = []
    for row, y in zip(logits.tolist(), target.tolist()):
        p = np.exp(row) / np.exp(row).sum()
        weights = {0: [1, 2, 3, 4], 3: [4, 4, 4, 1]}[y]
        expected.append(-np.log(p[y]) * float(np.dot(p, weights)))
    got = severity_cross_entropy(logits, target, severity)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_all_severities_one_is_plain_cross_entropy_values_and_gradients():
    torch.manual_seed(0)
    logits = torch.randn(6, 5, requires_grad=True)
    target = torch.randint(0, 5, (6,))
    ours = severity_cross_entropy(logits, target, torch.ones(5, 5)).mean()
    (grad_ours,) = torch.autograd.grad(ours, logits)
    plain = F.cross_entropy(logits, target)
    (grad_plain,) = torch.autograd.grad(plain, logits)
    assert ours.item() == pytest.approx(plain.item(), rel=1e-6)
    torch.testing.assert_close(grad_ours, grad_plain)
    assert (severity_matrix(HIERARCHY.parents, 0, "none") == 1).all()


def test_multitask_loss_is_the_sum_of_the_heads():
    torch.manual_seed(1)
    logits = {"fine": torch.randn(3, 4), "super": torch.randn(3, 3), "group": torch.randn(3, 2)}
    targets = {"fine": torch.tensor([0, 2, 3]), "super": torch.tensor([0, 1, 2]), "group": torch.tensor([0, 0, 1])}
    loss = MultiTaskLoss(TINY_TREE, ("fine", "super", "group"), "none")(logits, targets)
    assert loss.item() == pytest.approx(sum(F.cross_entropy(logits[h], targets[h]).item() for h in logits), rel=1e-6)


# --- the model and derived predictions -----------------------------------------------------------
def test_single_head_derives_coarse_distributions_by_summing_fine_probabilities():
    torch.manual_seed(2)
    fine_logits = torch.randn(5, 4)
    fine_to = {"fine": torch.arange(4), "super": torch.tensor(TINY_TREE[0]),
               "group": torch.tensor(TINY_TREE[1][TINY_TREE[0]])}
    probs = level_probabilities({"fine": fine_logits}, fine_to)
    p = F.softmax(fine_logits, 1)
    torch.testing.assert_close(probs["super"], torch.stack([p[:, 0] + p[:, 1], p[:, 2], p[:, 3]], 1))
    torch.testing.assert_close(probs["group"], torch.stack([p[:, :3].sum(1), p[:, 3]], 1))
    own = level_probabilities({"fine": fine_logits, "super": torch.zeros(5, 3)}, fine_to)["super"]
    torch.testing.assert_close(own, torch.full((5, 3), 1 / 3))


def test_network_output_shapes_and_config_round_trip():
    config = MultiTaskConfig(depth=2, width=4, convs_per_stage=1)
    net = MultiTaskNet(MultiTaskConfig.from_dict(json.loads(json.dumps(config.to_dict()))))
    out = net(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert {h: tuple(v.shape) for h, v in out.items()} == {"fine": (2, 100), "super": (2, 20), "group": (2, 9)}


# --- metrics and sampling ---------------------------------------------------------------------------
def test_consistency_by_hand_and_macro_accuracy_against_sklearn():
    pred = {"fine": np.array([0, 2, 3, 1]), "super": np.array([0, 1, 0, 0]), "group": np.array([0, 0, 1, 1])}
    got = consistency(pred, TINY_TREE[0], TINY_TREE[1])
    # fine->super: [0=0, 1=1, 2!=0, 0=0]; super->group: [0=0, 0=0, 0!=1, 0!=1]
    assert got == {"fine_super": 0.75, "super_group": 0.5, "all": 0.5}
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 7, 200), rng.integers(0, 7, 200)
    assert macro_accuracy(y, p) == pytest.approx(balanced_accuracy_score(y, p))
    counts = np.array([100, 3, 50, 2, 80])   # the rarest 40%: classes 3 and 1
    y, p = np.array([1, 1, 3, 3, 0]), np.array([1, 0, 0, 0, 0])
    assert minority_recall(y, p, counts, share=0.4) == pytest.approx((0.5 + 0.0) / 2)


def test_class_weighted_sampler_balances_classes_and_is_seeded():
    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    first = class_weighted_order(labels, 3, seed=0, epoch=0)
    assert torch.equal(first, class_weighted_order(labels, 3, seed=0, epoch=0))
    assert not torch.equal(first, class_weighted_order(labels, 3, seed=0, epoch=1))
    draws = torch.cat([class_weighted_order(labels, 3, seed=0, epoch=e) for e in range(30)])
    shares = torch.bincount(labels[draws], minlength=3).float() / len(draws)
    assert torch.allclose(shares, torch.full((3,), 1 / 3), atol=0.05)


def test_long_tail_keeps_the_profile():
    fine = np.repeat(np.arange(100), 50)
    kept = np.bincount(fine[long_tail(fine, 10.0, seed=0)], minlength=100)
    assert kept[0] == 50 and kept[99] == 5 and (np.diff(kept) <= 0).all()
    assert len(long_tail(fine, 1.0, seed=0)) == len(fine)
    with pytest.raises(UserError, match="imbalance"):
        long_tail(fine, 0.5, seed=0)


# --- data: the real reader and the stand-in ---------------------------------------------------------
def write_cifar100(root, n_train=40, n_test=20, coarse_shift=0):
    """Tiny CIFAR-100 python-format files (train, test, meta) under root/cifar-100-python."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name, n in (("train", n_train), ("test", n_test)):
        fine = rng.integers(0, 100, n)
        entry = {b"filenames": [b"x.png"] * n, b"batch_label": name.encode(),
                 b"fine_labels": fine.tolist(),
                 b"coarse_labels": ((HIERARCHY.fine_to_super[fine] + coarse_shift) % 20).tolist(),
                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}
        (folder / name).write_bytes(pickle.dumps(entry))
    meta = {b"fine_label_names": [n.encode() for n in CIFAR100_FINE_NAMES],
            b"coarse_label_names": [n.encode() for n in CIFAR100_SUPERCLASS_NAMES]}
    (folder / "meta").write_bytes(pickle.dumps(meta))
    return folder


def test_reads_cifar100_pickles_and_pools_train_and_test(tmp_path):
    write_cifar100(tmp_path)
    pooled = load_pooled("real", tmp_path, seed=0, smoke=False, per_class=600)
    assert pooled.images.shape == (60, 32, 32, 3) and pooled.images.dtype == np.uint8
    assert pooled.source.startswith("real: CIFAR-100 (40 train / 20 test)")


def test_coarse_labels_disagreeing_with_the_map_are_rejected(tmp_path):
    write_cifar100(tmp_path, coarse_shift=1)
    with pytest.raises(UserError, match="disagree"):
        load_pooled("real", tmp_path, seed=0, smoke=False, per_class=600)


def test_stand_in_looks_hierarchical():
    """Class means of the generated images are closer inside a superclass than inside a group, and
    closer inside a group than across groups."""
    images, fine = hierarchical_images(8, HIERARCHY.parents, seed=0)
    means = np.stack([images[fine == k].reshape(8, -1).astype(float).mean(0) for k in range(100)])
    dist = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))
    tree = tree_distance(HIERARCHY.parents, 0)
    by_level = [dist[tree == d].mean() for d in (1, 2, 3)]
    assert by_level[0] < by_level[1] < by_level[2]


def test_commons_plain_cifar100_stand_in_keeps_cifar100s_coarse_map():
    """common.datasets' own CIFAR-100 stand-in (pattern classes, no import of this folder) carries the real
    names and fine -> superclass map; this assignment passes its hierarchical one instead."""
    data = REAL_SETS["cifar100"].stand_in(0)
    assert data.classes == CIFAR100_FINE_NAMES and data.x_train.shape[1:] == (32, 32, 3)
    np.testing.assert_array_equal(data.aux_train["coarse"], HIERARCHY.fine_to_super[data.y_train])
    np.testing.assert_array_equal(data.aux_test["coarse"], HIERARCHY.fine_to_super[data.y_test])


# --- the script -------------------------------------------------------------------------------------
def test_parse_takes_the_recipe_and_smoke_shrinks_it(tmp_path):
    args = train_script.parse(["--out", str(tmp_path / "run")])
    assert {k: getattr(args, k) for k in train_script.RECIPE} == train_script.RECIPE
    smoke = train_script.parse(["--smoke", "--epochs", "5", "--depth", "3", "--out", str(tmp_path / "run")])
    assert smoke.epochs == 2 and {k: getattr(smoke, k) for k in train_script.SMOKE} == train_script.SMOKE


def _records(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_metrics(tmp_path, monkeypatch):
    flags = ["--smoke", "--epochs", "2", "--severity", "linear", "--sampler", "class_weighted", "--imbalance", "3"]
    train_script.main([*flags, "--out", str(tmp_path / "whole")])
    real_evaluate, calls = train_script.evaluate_split, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(train_script, "evaluate_split", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_script.main([*flags, "--out", str(tmp_path / "split")])
    monkeypatch.setattr(train_script, "evaluate_split", real_evaluate)
    train_script.main([*flags, "--out", str(tmp_path / "split"), "--resume"])
    whole, resumed = _records(tmp_path / "whole"), _records(tmp_path / "split")
    assert [r["epoch"] for r in resumed] == [1, 2]
    for a, b in zip(whole, resumed):
        for key in ("train_loss", "test_loss", "test_fine_acc", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-5), key


def test_single_head_smoke_run_writes_its_summary(tmp_path):
    summary = train_script.main(["--smoke", "--heads", "fine", "--out", str(tmp_path / "one")])
    assert summary["heads"] == ["fine"]
    for level in ("super", "group"):  # the derived coarse accuracies agree with the saved confusion matrices
        matrix = np.array(summary[f"confusion_{level}"])
        assert matrix.sum() == summary["n_test"]
        assert summary[f"test_{level}_acc"] == pytest.approx(np.trace(matrix) / matrix.sum())
    state = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=True)
    net = MultiTaskNet(MultiTaskConfig.from_dict(state["model_config"]))
    net.load_state_dict(state["model"])           # the checkpoint rebuilds the model without the CLI
    assert list(net.heads) == ["fine"]


@pytest.mark.slow
def test_real_data_run_on_written_files(tmp_path):
    write_cifar100(tmp_path / "data", n_train=60, n_test=20)
    done = run_script(str(REPO / "cifar100_multitask/train.py"),
                      "--data", "real", "--data-root", str(tmp_path / "data"),
                      "--epochs", "1", "--batch-size", "16", "--depth", "1", "--width", "4", "--convs-per-stage", "1",
                      "--wandb", "off", "--device", "cpu", "--out", str(tmp_path / "run"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["data_source"].startswith("real: CIFAR-100") and summary["n_train"] + summary["n_test"] == 80


@pytest.mark.parametrize("flags, message", [
    (["--data", "real", "--data-root", "{tmp}/nothing"], "CIFAR-100 not found"),
    (["--data", "generated", "--per-class", "2", "--depth", "6", "--epochs", "1"], "--depth 6"),
    (["--data", "generated", "--per-class", "2", "--imbalance", "0.5"], "--imbalance must be >= 1"),
])
def test_bad_input_is_one_line(flags, message, tmp_path, monkeypatch, capsys):
    spec = REAL_SETS["cifar100"]  # downloads go to a closed local port: the real code path, offline
    monkeypatch.setitem(REAL_SETS, "cifar100", spec.__class__(**{**spec.__dict__, "urls": ("http://127.0.0.1:9/",)}))
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    with pytest.raises(SystemExit) as exit_:
        run_cli(train_script.main, [*flags, "--wandb", "off", "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err
    assert err.strip().count("\n") == 0
