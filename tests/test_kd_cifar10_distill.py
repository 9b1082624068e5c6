"""kd_cifar10 part B: the distillation losses against hand computations, distill.py end to end
(artefacts, a loaded teacher, resume across phases, one-line errors), 2 gloo processes under torchrun
giving one process's metrics, the report and the step bench."""
import json
import math
import re

import pytest
import torch
import torch.nn.functional as F

from bench import kd_cifar10_step
from common import distributed
from common.checkpoint import load_checkpoint
from common.errors import UserError, run_cli
from common.images import load_tensors
from common.pretrained import map_pretrained_keys
from common.reporting import load_result
from kd_cifar10 import distill, distill_report
from kd_cifar10.losses import LOSSES, HintonKD, LogitMSE, build_loss
from kd_cifar10.model import model_from_checkpoint
from resnet_norms.model import ResNetConfig, build_resnet
from tests.conftest import REPO, run_script

STUDENT = [[2.0, -1.0, 0.5], [0.0, 0.3, -0.7]]
TEACHER = [[3.0, 0.0, -1.0], [-0.5, 1.5, 0.2]]
LABELS = [0, 2]


def _softmax(row, t):
    exps = [math.exp(v / t) for v in row]
    return [e / sum(exps) for e in exps]


def _hand_hinton(student, teacher, labels, t, alpha):
    """The loss written out with Python floats: T^2 * mean_b KL(p_teacher || q_student) and CE."""
    kl = ce = 0.0
    for s_row, t_row, label in zip(student, teacher, labels):
        q, p = _softmax(s_row, t), _softmax(t_row, t)
        kl += sum(pk * (math.log(pk) - math.log(qk)) for pk, qk in zip(p, q))
        ce += -math.log(_softmax(s_row, 1.0)[label])
    kd = t * t * kl / len(labels)
    return alpha * kd + (1 - alpha) * ce / len(labels), kd, ce / len(labels)


@pytest.mark.parametrize("t, alpha", [(4.0, 0.9), (2.0, 0.5), (1.0, 1.0), (3.0, 0.0)])
def test_hinton_loss_equals_the_hand_computation(t, alpha):
    total, parts = HintonKD(t, alpha)(torch.tensor(STUDENT), torch.tensor(TEACHER), torch.tensor(LABELS))
    want, kd, ce = _hand_hinton(STUDENT, TEACHER, LABELS, t, alpha)
    assert total.item() == pytest.approx(want, rel=1e-5)
    assert parts["kd"].item() == pytest.approx(kd, rel=1e-5) and parts["ce"].item() == pytest.approx(ce, rel=1e-5)


def test_alpha_zero_is_cross_entropy_and_t1_alpha1_is_plain_kl():
    student, teacher, labels = torch.randn(6, 5), torch.randn(6, 5), torch.randint(0, 5, (6,))
    ce_only, _ = HintonKD(temperature=7.0, alpha=0.0)(student, teacher, labels)
    assert ce_only.item() == pytest.approx(F.cross_entropy(student, labels).item(), rel=1e-6)
    kl_only, _ = HintonKD(temperature=1.0, alpha=1.0)(student, teacher, labels)
    p, log_q = teacher.softmax(1), student.log_softmax(1)
    assert kl_only.item() == pytest.approx((p * (p.log() - log_q)).sum(1).mean().item(), rel=1e-5)


def test_hinton_gradient_is_t_times_softened_difference():
    """d(T^2 KL)/d student = T (q_T - p_T) / B: the T^2 factor keeps the soft gradient's scale."""
    student = torch.tensor(STUDENT, requires_grad=True)
    teacher, t = torch.tensor(TEACHER), 3.0
    total, _ = HintonKD(t, 1.0)(student, teacher, torch.tensor(LABELS))
    total.backward()
    want = t * ((student.detach() / t).softmax(1) - (teacher / t).softmax(1)) / len(STUDENT)
    assert torch.allclose(student.grad, want, atol=1e-6)


def test_registry_builds_every_loss_and_rejects_bad_weights():
    assert set(LOSSES) == {"hinton", "logit_mse"}
    student, teacher, labels = torch.randn(4, 3), torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    for name in LOSSES:
        total, parts = build_loss(name, 2.0, 0.5)(student, teacher, labels)
        assert total.ndim == 0 and set(parts) == {"kd", "ce"}
    mse, _ = LogitMSE(alpha=1.0)(student, teacher, labels)
    assert mse.item() == pytest.approx(((student - teacher) ** 2).mean().item(), rel=1e-6)
    with pytest.raises(ValueError):
        HintonKD(temperature=2.0, alpha=1.5)


def test_single_process_helpers_are_no_ops():
    assert distributed.world_size() == 1 and distributed.rank() == 0 and distributed.is_main_process()
    x = torch.arange(5)
    assert torch.equal(distributed.shard(x), x) and torch.equal(distributed.all_reduce_sum(x), x)
    assert distributed.per_rank_batch(12) == 12
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap_model(model, "cpu") is model


def test_global_batch_splits_over_ranks_or_fails_in_one_line(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    assert distributed.per_rank_batch(128) == 32
    with pytest.raises(UserError, match="divisible by the 4 processes"):
        distributed.per_rank_batch(130)


def _records(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_parse_resolves_every_default(tmp_path):
    out = ["--out", str(tmp_path / "run")]
    args = distill.parse([*out, "--epochs", "7", "--seed", "5"])
    assert args.teacher_epochs == 7 and args.student_seeds == [5]
    args = distill.parse([*out, "--teacher-epochs", "3", "--student-seeds", "1", "2"])
    assert args.teacher_epochs == 3 and args.student_seeds == [1, 2]
    smoke = distill.parse([*out, "--smoke", "--teacher-epochs", "9"])
    assert (smoke.epochs, smoke.teacher_epochs, smoke.t_width, smoke.s_width) == (2, 2, *distill.SMOKE_WIDTHS)
    with pytest.raises(UserError, match="repeats a seed"):
        distill.parse([*out, "--student-seeds", "1", "1"])


SMOKE_FLAGS = ["--smoke", "--student-seeds", "0", "1"]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("distill") / "run"
    summary = distill.main(SMOKE_FLAGS + ["--out", str(out)])
    return out, summary


@pytest.mark.slow
def test_smoke_run_writes_every_artefact_and_the_table(smoke_run):
    out, summary = smoke_run
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "curves.png",
                 "per_class_accuracy.png"):
        assert (out / name).stat().st_size > 0, name
    for phase in ("teacher", "student_seed0", "distilled_seed0", "student_seed1", "distilled_seed1"):
        assert (out / phase / "checkpoint.pt").exists() and (out / phase / "summary.json").exists(), phase
    saved = json.loads((out / "summary.json").read_text())
    assert saved["data_source"].startswith("generated") and len(saved["students"]) == 2
    teacher, student = saved["teacher"], saved["students"][0]
    assert teacher["parameters"] > student["parameters"] == saved["distilled"][0]["parameters"]
    assert {r["phase"] for r in _records(out)} == {"teacher", "student_seed0", "distilled_seed0",
                                                   "student_seed1", "distilled_seed1"}
    assert all("train_kd" in r for r in _records(out) if r["phase"].startswith("distilled"))
    table = distill.comparison_table(saved)
    assert table.count("student distilled") == 2 and f"{teacher['parameters']:,}" in table


@pytest.mark.slow
def test_top_checkpoint_rebuilds_the_distilled_student_without_the_cli(smoke_run):
    out, summary = smoke_run
    model = model_from_checkpoint(load_checkpoint(out / "checkpoint.pt"))
    data = load_tensors("cifar10", "generated", REPO / "data", seed=0, smoke=True)
    result = distill.evaluate(model, data.x_test, data.y_test, len(data.classes), "cpu")
    assert result["test_acc"] == pytest.approx(summary["distilled"][-1]["test_acc"])


@pytest.mark.slow
def test_loaded_teacher_is_not_retrained_and_scores_the_same(smoke_run, tmp_path):
    out, summary = smoke_run
    again = distill.main(["--smoke", "--out", str(tmp_path / "reuse"), "--teacher",
                          str(out / "teacher" / "checkpoint.pt")])
    assert again["teacher"]["test_acc"] == pytest.approx(summary["teacher"]["test_acc"])
    assert again["teacher"]["seed"] is None and not (tmp_path / "reuse" / "teacher").exists()


@pytest.mark.slow
def test_resume_after_an_interruption_mid_phase_gives_the_same_metrics(smoke_run, tmp_path, monkeypatch):
    whole, summary = smoke_run
    real_evaluate, calls = distill.evaluate, {"n": 0}

    def interrupt_in_student_epoch_2(*args, **kwargs):
        calls["n"] += 1   # teacher: 2 epochs + final, student: epoch 1, then epoch 2 is interrupted
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(distill, "evaluate", interrupt_in_student_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        distill.main(SMOKE_FLAGS + ["--out", str(tmp_path / "split")])
    assert [r["epoch"] for r in _records(tmp_path / "split" / "student_seed0")] == [1]
    monkeypatch.setattr(distill, "evaluate", real_evaluate)
    resumed = distill.main(SMOKE_FLAGS + ["--out", str(tmp_path / "split"), "--resume"])
    assert len(_records(whole)) == len(_records(tmp_path / "split")) == 10
    for a, b in zip(_records(whole), _records(tmp_path / "split")):
        assert a["phase"] == b["phase"] and a["epoch"] == b["epoch"]
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["test_acc"] == pytest.approx(b["test_acc"])
    assert resumed["distilled"][1]["test_acc"] == pytest.approx(summary["distilled"][1]["test_acc"])


@pytest.mark.parametrize("flags, message", [
    (["--alpha", "1.5"], "--alpha: expected a number from 0 to 1, got 1.5"),
    pytest.param(["--teacher", "/nonexistent/checkpoint.pt"], "no checkpoint at",  # makes the data set first
                 marks=pytest.mark.slow),
    (["--loss", "nope"], "invalid choice: 'nope'"),
    (["--s-layers", "1", "1"], "--s-layers: expected 4 arguments"),
])
def test_bad_inputs_are_one_line(flags, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli(distill.main, ["--smoke", "--out", str(tmp_path / "r"), *flags])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.strip().count("\n") == 0


@pytest.mark.slow
def test_the_script_reports_a_user_error_in_one_line(tmp_path):
    done = run_script(str(REPO / "kd_cifar10" / "distill.py"), "--smoke", "--alpha", "-1", "--out", str(tmp_path))
    assert done.returncode == 2 and done.stderr.strip().count("\n") == 0 and "Traceback" not in done.stderr


@pytest.mark.slow
def test_two_gloo_processes_match_one_process(tmp_path):
    """torchrun --nproc_per_node=2 with the global batch 32 (16 per rank) = 1 process with batch 32.
    GroupNorm (per-example statistics) makes the two exactly the same computation up to float sums."""
    flags = ["--smoke", "--epochs", "1", "--augment", "none", "--norm", "group", "--batch-size", "32"]
    script = str(REPO / "kd_cifar10" / "distill.py")
    distill.main(flags + ["--out", str(tmp_path / "one")])
    two = run_script("-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", script, *flags,
                     "--out", str(tmp_path / "two"))
    assert two.returncode == 0, two.stderr[-2000:]
    assert "2 process(es)" in two.stdout and two.stdout.count("run directory") == 1   # rank 0 prints
    ones, twos = _records(tmp_path / "one"), _records(tmp_path / "two")
    assert len(ones) == len(twos) == 3
    for a, b in zip(ones, twos):
        for key in ("train_loss", "test_loss", "train_acc", "test_acc"):
            assert a[key] == pytest.approx(b[key], abs=2e-3), (a["phase"], key)
    assert json.loads((tmp_path / "two" / "summary.json").read_text())["world_size"] == 2


@pytest.mark.slow
def test_report_builds_from_the_smoke_run(smoke_run, tmp_path):
    out, _ = smoke_run
    specs = distill_report.runs(quick=True)
    assert specs and all(s.name.startswith("distill_") and s.script == "distill.py" for s in specs)
    results = {spec.name: load_result(spec.name, out) for spec in specs}
    markdown = distill_report.build(results, tmp_path / "report")
    assert "student distilled" in markdown and "85.95%" in markdown
    assert list((tmp_path / "report").glob("*.png"))


def test_step_bench_smoke_prints_the_ratio(capsys):
    kd_cifar10_step.main(["--smoke"])
    out = capsys.readouterr().out
    assert out.count("images/s") == 2 and "ratio ours / reference" in out


# --teacher-checkpoint: the published CIFAR-10 ResNets as the teacher -------------------------------------

def test_renormalised_teacher_sees_inputs_in_its_own_statistics():
    torch.manual_seed(0)
    inner = torch.nn.Conv2d(3, 2, 1)
    inner.config = "cfg"
    from_mean, from_std = (0.4, 0.5, 0.6), (0.2, 0.25, 0.3)
    to_mean, to_std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    wrapped = distill.Renormalised(inner, from_mean, from_std, to_mean, to_std)
    x = torch.randn(4, 3, 5, 5)
    view = lambda v: torch.tensor(v).view(1, 3, 1, 1)  # noqa: E731
    pixels = x * view(from_std) + view(from_mean)
    torch.testing.assert_close(wrapped(x), inner((pixels - view(to_mean)) / view(to_std)))
    assert wrapped.config == "cfg"


def published_layout(model) -> dict:
    """A resnet_norms ResNet's weights under the published files' key names (module.layer1.0.bn1.weight)."""
    renames = [(r"^stem_conv\.", "conv1."), (r"^stem_norm\.", "bn1."), (r"^head\.", "linear."),
               (r"^stages\.(\d)\.(\d+)\.norm", lambda m: f"stages.{m[1]}.{m[2]}.bn"),
               (r"^stages\.(\d)\.", lambda m: f"layer{int(m[1]) + 1}.")]
    out = {}
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            for pattern, new in renames:
                key = re.sub(pattern, new, key)
            out[f"module.{key}"] = value
    return out


@pytest.fixture
def published_resnet(tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "resnet20-fake.th"
    torch.save({"state_dict": published_layout(build_resnet(ResNetConfig(n=3))), "best_prec1": 12.5}, path)
    return path


def test_the_published_layout_maps_back_to_our_keys():
    model = build_resnet(ResNetConfig(n=1))
    mapped = map_pretrained_keys(published_layout(model))
    assert "module.layer2.0.bn1.weight" in published_layout(model)
    assert set(mapped) == {k for k in model.state_dict() if not k.endswith("num_batches_tracked")}


@pytest.mark.slow
def test_teacher_checkpoint_takes_a_published_resnet(published_resnet, tmp_path):
    summary = distill.main(["--smoke", "--out", str(tmp_path / "run"), "--teacher-checkpoint", str(published_resnet)])
    assert summary["teacher"]["loaded_from"] == str(published_resnet)
    assert summary["teacher"]["model"].startswith("ResNet-20") and summary["teacher"]["parameters"] == 269_722
    assert not (tmp_path / "run" / "teacher").exists(), "a loaded teacher is not retrained"


@pytest.mark.parametrize("case, message", [("corrupt", "corrupt checkpoint"), ("both", "not both"),
                                           ("wrong", "does not fit")])
def test_a_bad_teacher_checkpoint_is_one_line(case, message, published_resnet, tmp_path, capsys):
    path = tmp_path / "bad.th"
    if case == "corrupt":
        path.write_bytes(b"\x80\x02 truncated")
    elif case == "wrong":
        state = torch.load(published_resnet, weights_only=True)["state_dict"]
        state["module.linear.weight"] = torch.zeros(10, 7)
        torch.save({"state_dict": state}, path)
    extra = ["--teacher", str(published_resnet)] if case == "both" else []
    with pytest.raises(SystemExit) as exit_:
        run_cli(distill.main, ["--smoke", "--out", str(tmp_path / "r"), "--teacher-checkpoint", str(path), *extra])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and message in err and err.strip().count("\n") == 0, err
