"""dfad_kd: the students' parameter ratios, what a student step and a generator step may change (spied on in
train.py's loop), the MAE and the generator's extra terms by hand and under two processes, the generator's
shapes, the presets, teacher files (ours, the published ResNet layout, corrupt, another architecture), train.py
and train_teacher.py end to end (smoke, baselines, kill and --resume), the report."""
import contextlib
import json
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.optim.optimizer import register_optimizer_step_post_hook

from common.checkpoint import load_checkpoint, save_checkpoint
from common.errors import UserError, run_cli
from common.reporting import load_result
from dfad_kd import compare, evaluation, report, teachers, train, train_teacher
from dfad_kd.data import DATASETS, seed_test_subsets
from dfad_kd.losses import BatchNormMatch, bn_statistics_gap, neg_class_entropy
from dfad_kd.model import (RESNET34, Generator, GeneratorConfig, LeNet5Config, Teacher, build, freeze, load_teacher,
                           mae, model_config_dict, model_from_checkpoint, parameter_count, student_config)
from resnet_norms.model import ResNetConfig, build_resnet
from resnet_norms.norms import BatchNorm as OurBatchNorm
from tests.conftest import REPO, run_script

PRETRAINED = REPO.parent / "shared" / "data" / "pretrained" / "cifar10_resnet"


# models ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("family, config", [("lenet5", LeNet5Config()), ("resnet", ResNetConfig(n=3))])
@pytest.mark.parametrize("ratio", [0.1, 0.2])
def test_students_have_about_the_asked_share_of_the_teachers_parameters(family, config, ratio):
    student = student_config(family, config, ratio)
    share = parameter_count(family, student) / parameter_count(family, config)
    assert share == pytest.approx(ratio, abs=0.01)
    assert type(student) is type(config)
    model = build(family, student)
    assert sum(p.numel() for p in model.parameters()) == parameter_count(family, student)


@pytest.mark.slow
def test_resnet34_students_are_resnet18_layouts_at_the_asked_share():
    share = parameter_count("resnet", student_config("resnet", ResNetConfig(n=9), 0.1)) / parameter_count(
        "resnet", ResNetConfig(n=9))
    assert share == pytest.approx(0.1, abs=0.01)                   # ResNet-56 too
    assert parameter_count("resnet34", RESNET34) == 21_282_122
    for ratio in (0.1, 0.2):
        student = student_config("resnet34", RESNET34, ratio)
        assert student.layers == (2, 2, 2, 2)
        assert parameter_count("resnet34", student) / 21_282_122 == pytest.approx(ratio, abs=0.01)


def test_lenet5_is_lenet5():
    model = build("lenet5", LeNet5Config())
    assert sum(p.numel() for p in model.parameters()) == 61_706
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_mae_is_the_mean_absolute_logit_difference_by_hand():
    student = [[1.0, -2.0, 0.5], [0.0, 3.0, -1.0]]
    teacher = [[0.5, 1.0, 0.5], [-2.0, 3.5, 1.0]]
    by_hand = sum(abs(s - t) for rs, rt in zip(student, teacher) for s, t in zip(rs, rt)) / 6
    assert by_hand == pytest.approx(8.0 / 6)
    assert mae(torch.tensor(student), torch.tensor(teacher)).item() == pytest.approx(by_hand)


@pytest.mark.parametrize("output", ["pixels", "batchnorm"])
def test_generator_shapes_and_pixel_range(output):
    mean, std = (0.1307,), (0.3081,)
    g = Generator(GeneratorConfig(nz=8, ngf=4, channels=1, image_size=28, mean=mean, std=std, output=output))
    x = g(torch.randn(5, 8))
    assert x.shape == (5, 1, 28, 28)
    if output == "pixels":   # tanh's range mapped to [0, 1] pixels, then the teacher's normalisation
        assert x.min() >= (0 - mean[0]) / std[0] - 1e-5 and x.max() <= (1 - mean[0]) / std[0] + 1e-5
    colour = Generator(GeneratorConfig(nz=8, ngf=4, channels=3, image_size=32, mean=(0.5,) * 3, std=(0.2,) * 3))
    assert colour(torch.randn(2, 8)).shape == (2, 3, 32, 32)
    with pytest.raises(UserError, match="divisible by 4"):
        GeneratorConfig(image_size=30)


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def _teacher_and_generator():
    """A tiny frozen BatchNorm teacher (running statistics that are not the defaults) and a generator for it."""
    torch.manual_seed(0)
    config = ResNetConfig(n=1, widths=(4, 8, 8), image_size=8)
    teacher = freeze(Teacher(build("resnet", config), "resnet", (0.5,) * 3, (0.25,) * 3, "test"))
    with torch.no_grad():
        for buf in teacher.model.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    generator = Generator(GeneratorConfig(nz=6, ngf=4, channels=3, image_size=8, mean=(0.5,) * 3, std=(0.25,) * 3,
                                          output="batchnorm"))
    return teacher, generator


@pytest.fixture(scope="module")
def bn_teacher(tmp_path_factory):
    """A tiny ResNet teacher for CIFAR shapes with BatchNorm running statistics that are not the defaults, saved
    as train_teacher.py saves one."""
    torch.manual_seed(0)
    model = build("resnet", ResNetConfig(n=1, widths=(4, 8, 8)))
    with torch.no_grad():
        for buf in model.buffers():
            if buf.is_floating_point():
                buf.uniform_(0.5, 1.5)
    path = tmp_path_factory.mktemp("bn_teacher") / "checkpoint.pt"
    save_checkpoint(path, {"model_config": model_config_dict(model, (0.5,) * 3, (0.25,) * 3),
                           "model": model.state_dict()})
    return path


def _spied_run(monkeypatch, argv):
    """train.main(argv), recording the teacher's, student's and generator's states and the student's gradients
    after every student step ("s": the student's optimiser stepped) and every generator step ("g": train.py's
    held(student) block, the generator's step inside it, has ended)."""
    made, steps = {}, []
    make_student, generator, obtain_teacher = train.make_student, train.Generator, train.obtain_teacher
    held = train.held
    monkeypatch.setattr(train, "make_student", lambda *a: made.setdefault("student", make_student(*a)))
    monkeypatch.setattr(train, "Generator", lambda config: made.setdefault("generator", generator(config)))
    monkeypatch.setattr(train, "obtain_teacher", lambda *a: made.setdefault("teacher", obtain_teacher(*a)))

    def record(who):
        states = {name: _snapshot(m) for name, m in (("teacher", made["teacher"].model), ("student", made["student"]),
                                                      ("generator", made["generator"]))}
        steps.append((who, states, [None if p.grad is None else p.grad.clone() for p in made["student"].parameters()]))

    @contextlib.contextmanager
    def spied_held(module):
        with held(module):
            yield module
        record("g")

    def after_step(optimizer, args, kwargs):
        if optimizer.param_groups[0]["params"][0] is next(made["student"].parameters()):
            record("s")

    monkeypatch.setattr(train, "held", spied_held)
    handle = register_optimizer_step_post_hook(after_step)
    try:
        summary = train.main(argv)
    finally:
        handle.remove()
    return made, steps, summary


@pytest.mark.parametrize("balance, bn_match", [(0, 0), (1, 0), (1, 1)])
def test_each_step_changes_only_its_own_player(bn_teacher, tmp_path, monkeypatch, balance, bn_match):
    """Student steps (sampling from the generator included) leave the generator and the teacher unchanged,
    parameters and BatchNorm buffers; generator steps leave the student (weights, BatchNorm running statistics,
    gradients) and the teacher unchanged, with and without the extra terms."""
    made, steps, summary = _spied_run(monkeypatch, [
        "--smoke", "--dataset", "cifar10", "--teacher", str(bn_teacher), "--data", "generated", "--epochs", "1",
        "--iters-per-epoch", "2", "--ks", "2", "--kg", "1", "--balance", str(balance), "--bn-match", str(bn_match),
        "--out", str(tmp_path / "run")])
    assert [who for who, _, _ in steps] == list("ssgssg")
    assert any(k.endswith("running_mean") for k in steps[0][1]["student"]), "the student has BatchNorm"
    for (_, before, grads_before), (who, after, grads_after) in zip(steps, steps[1:]):
        assert _same(before["teacher"], after["teacher"])
        mover, still = ("student", "generator") if who == "s" else ("generator", "student")
        assert _same(before[still], after[still]), f"a {who} step changed the {still}"
        assert not _same(before[mover], after[mover]), f"a {who} step left the {mover} unchanged"
        if who == "g":
            assert all(torch.equal(a, b) for a, b in zip(grads_before, grads_after)), "the student got gradients"
    assert all(p.requires_grad for p in made["student"].parameters()), "held() gives the gradients back"
    assert not made["teacher"].model.training and not any(p.requires_grad for p in made["teacher"].model.parameters())
    assert ("loss_bn" in _records(tmp_path / "run")[-1]) == (bn_match > 0) and summary["bn_match"] == bn_match


def test_the_balance_term_is_the_negative_entropy_of_the_mean_prediction_by_hand():
    logits = torch.tensor([[0.0, 0.0], [2.0, 0.0]])
    p1 = (0.5 + 1 / (1 + torch.exp(torch.tensor(-2.0))).item()) / 2            # mean softmax of class 0
    by_hand = p1 * torch.log(torch.tensor(p1)).item() + (1 - p1) * torch.log(torch.tensor(1 - p1)).item()
    assert neg_class_entropy(logits).item() == pytest.approx(by_hand, rel=1e-6)
    assert neg_class_entropy(torch.zeros(3, 10)).item() == pytest.approx(-2.302585, rel=1e-6)


# the BatchNorm statistics loss (--bn-match) ------------------------------------------------------------

def test_the_bn_gap_by_hand():
    # channel 0 holds 1 and 3 (mean 2, biased var 1), channel 1 holds 0 and 4 (mean 2, var 4)
    features = torch.tensor([[[[1.0]], [[0.0]]], [[[3.0]], [[4.0]]]])                 # (B=2, C=2, 1, 1)
    gap = bn_statistics_gap(features, torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))
    assert gap.item() == pytest.approx(((2 - 1) ** 2 + 0 ** 2) ** 0.5 + (0 ** 2 + (4 - 1) ** 2) ** 0.5)   # 1 + 3


@pytest.mark.parametrize("norm", [torch.nn.BatchNorm2d, OurBatchNorm])
def test_the_bn_loss_is_zero_when_the_batch_has_the_running_statistics(norm):
    torch.manual_seed(0)
    layer = norm(3).eval()
    x = torch.randn(8, 3, 5, 5) * torch.tensor([1.0, 2.0, 0.5]).view(1, 3, 1, 1) + 3
    with torch.no_grad():
        layer.running_mean.copy_(x.mean((0, 2, 3)))
        layer.running_var.copy_(x.var((0, 2, 3), unbiased=False))
    match = BatchNormMatch(torch.nn.Sequential(torch.nn.Identity(), layer))
    assert match.layers == [layer]
    with match.recording():
        layer(x)
    assert match.loss().item() == pytest.approx(0, abs=1e-5)
    with match.recording():
        layer(x + 1)                                                          # every mean off by 1
    assert match.loss().item() == pytest.approx(3 ** 0.5, rel=1e-4)
    layer(x)                                                                  # outside recording(): nothing kept
    assert len(match.collected) == 1


def test_the_bn_loss_reaches_the_generator_and_never_moves_the_teachers_buffers():
    teacher, generator = _teacher_and_generator()
    match = BatchNormMatch(teacher.model)
    assert len(match.layers) == sum(1 for m in teacher.model.modules() if type(m).__name__ == "BatchNorm")
    before = _snapshot(teacher.model)
    x = generator(torch.randn(8, 6))
    with match.recording():
        teacher.model(x)
    match.loss().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in generator.project.parameters())
    assert _same(before, _snapshot(teacher.model)) and not teacher.model.training


@pytest.mark.slow
def test_the_bn_loss_changes_the_generators_step(bn_teacher, tmp_path):
    generators = {}
    for weight in (0, 1):
        train.main(["--smoke", "--dataset", "cifar10", "--teacher", str(bn_teacher), "--data", "generated",
                    "--epochs", "1", "--iters-per-epoch", "1", "--ks", "1", "--bn-match", str(weight),
                    "--out", str(tmp_path / str(weight))])
        generators[weight] = load_checkpoint(tmp_path / str(weight) / "checkpoint.pt")["extra"]["generator"]
    assert not _same(generators[0], generators[1])


def test_bn_match_needs_a_teacher_with_batchnorm(smoke_teacher, tmp_path, capsys):
    with pytest.raises(UserError, match="no(ne)? BatchNorm|has none"):
        BatchNormMatch(build("lenet5", LeNet5Config()))
    err = _exit_line(["--smoke", "--teacher", str(smoke_teacher[0]), "--bn-match", "1", "--out", str(tmp_path)],
                     capsys)
    assert "--bn-match needs a teacher with BatchNorm layers" in err


def _batch_terms(rank: int = 0, world: int = 1) -> dict:
    """The class-balance term and the BN gap of one fixed batch, and their gradients, from this process's rows."""
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=generator)[rank::world].requires_grad_()
    features = (torch.randn(8, 3, 4, 4, generator=generator) * 2 + 1)[rank::world].requires_grad_()
    balance = neg_class_entropy(logits)
    gap = bn_statistics_gap(features, torch.tensor([0.5, 1.0, 1.5]), torch.tensor([1.0, 4.0, 2.0]))
    (balance + gap).backward()
    return {"balance": balance.item(), "gap": gap.item(), "logits_grad": logits.grad, "features_grad": features.grad}


def _batch_terms_worker(rank: int, port: int, results) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        results[rank] = _batch_terms(rank, 2)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_the_batch_wide_terms_under_two_processes_are_one_processs():
    """Each process holds its rows of the batch: the balance term and the BN gap are the whole batch's, and
    each process's gradient is N x one process's on its rows (DDP divides the sum of the N by N)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    results = mp.Manager().dict()
    mp.start_processes(_batch_terms_worker, args=(port, results), nprocs=2, start_method="fork")
    one = _batch_terms()
    for rank in (0, 1):
        got = results[rank]
        assert got["balance"] == pytest.approx(one["balance"], rel=1e-6)
        assert got["gap"] == pytest.approx(one["gap"], rel=1e-6)
        for key in ("logits_grad", "features_grad"):
            assert torch.allclose(got[key], 2 * one[key][rank::2], rtol=1e-5, atol=1e-7), key


def test_the_frozen_teacher_cannot_be_put_back_in_training_mode():
    teacher, _ = _teacher_and_generator()
    teacher.model.train()
    assert not teacher.model.training
    assert not any(p.requires_grad for p in teacher.model.parameters())


def test_the_seed_test_subsets_are_fixed_and_nested():
    subsets = seed_test_subsets(1000)
    assert len(subsets["10"]) == 100 and len(subsets["20"]) == 200
    assert set(subsets["10"].tolist()) <= set(subsets["20"].tolist())
    assert torch.equal(seed_test_subsets(1000)["20"], subsets["20"])


def test_compare_plots_runs_side_by_side_and_rejects_bad_specs(tmp_path):
    for name, accs in (("a", [0.1, 0.3]), ("b", [0.1, 0.12, 0.11])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.jsonl").write_text(
            "".join(json.dumps({"epoch": i + 1, "test_acc": a, "agree_real": a}) + "\n" for i, a in enumerate(accs)))
    runs = compare.read_runs([f"DFAD={tmp_path / 'a'}", f"noise={tmp_path / 'b'}"])
    assert list(runs) == ["DFAD", "noise"] and [r["test_acc"] for r in runs["noise"]] == [0.1, 0.12, 0.11]
    out = compare.main([f"DFAD={tmp_path / 'a'}", f"noise={tmp_path / 'b'}", "--out", str(tmp_path / "c.png")])
    assert out.stat().st_size > 0
    with pytest.raises(UserError, match="LABEL=RUN_DIR"):
        compare.read_runs([str(tmp_path / "a")])
    with pytest.raises(UserError, match="does not exist"):
        compare.read_runs([f"x={tmp_path / 'missing'}"])
    (tmp_path / "other").mkdir()   # another script's run (a KeyError traceback before), and one with no epoch
    (tmp_path / "other" / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "test_acc": 0.5}) + "\n")
    with pytest.raises(UserError, match="metrics.jsonl holds no 'agree_real' for every epoch: point o= at a dfad_kd"):
        compare.read_runs([f"o={tmp_path / 'other'}"])
    (tmp_path / "other" / "metrics.jsonl").write_text("")
    with pytest.raises(UserError, match="metrics.jsonl holds no finished epoch: point o= at"):
        compare.read_runs([f"o={tmp_path / 'other'}"])


# per-data-set presets -----------------------------------------------------------------------------------

def test_each_dataset_brings_its_recipe_as_defaults():
    PRESETS = train.PRESETS
    mnist = train.parse(["--out", "/tmp/unused"])                               # --dataset mnist by default
    assert (mnist.batch_size, mnist.ngf, mnist.student_optimizer, mnist.lr, mnist.balance, mnist.bn_match) == (
        128, 16, "adam", 1e-3, 1.0, 0.0)
    cifar = train.parse(["--dataset", "cifar10", "--out", "/tmp/unused"])
    for key, value in PRESETS["cifar10"].items():
        assert getattr(cifar, key) == value, key
    assert cifar.bn_match > 0 and cifar.gen_output == "pixels"
    assert PRESETS["mnist"]["batch_size"] != PRESETS["cifar10"]["batch_size"]   # the two presets differ


def test_explicit_flags_win_over_the_preset():
    args = train.parse(["--dataset", "cifar10", "--out", "/tmp/unused", "--batch-size", "32", "--bn-match", "0",
                        "--balance", "0", "--gen-output", "batchnorm", "--student-optimizer", "sgd", "--lr", "0.1",
                        "--epochs", "3"])
    assert (args.batch_size, args.bn_match, args.balance, args.gen_output, args.student_optimizer, args.lr,
            args.epochs) == (32, 0.0, 0.0, "batchnorm", "sgd", 0.1, 3)
    assert train.parse(["--out", "/tmp/unused", "--dataset=cifar10"]).bn_match > 0          # --flag=value form too
    assert train.parse(["--out", "/tmp/unused", "--balance", "0"]).balance == 0.0   # the generic default value


def test_the_short_mnist_command_is_the_measured_one():
    """README: the 96.60% run's explicit command and the preset's short one parse to the same run."""
    common = ["--teacher", "t.pt", "--data-root", "../shared/data", "--data", "real", "--out", "/tmp/unused",
              "--threads", "1"]     # auto counts the idle cores at each parse: two parses may differ
    long = train.parse(common + ["--batch-size", "128", "--ngf", "16", "--epochs", "30", "--iters-per-epoch", "30",
                                 "--student-optimizer", "adam", "--lr", "1e-3", "--balance", "1", "--student-ratio",
                                 "0.2"])
    assert vars(train.parse(common)) == vars(long)
    cifar = train.parse(["--data", "real", "--dataset", "cifar10", "--out", "/tmp/unused"])    # --data is no --dataset
    assert cifar.bn_match > 0 and cifar.data == "real"


def test_the_help_shows_each_presets_value_in_its_table(capsys):
    with pytest.raises(SystemExit):
        train.parse(["--help"])
    text = capsys.readouterr().out
    table = text[text.index("presets:"):]
    for key in train.PRESETS["mnist"]:
        row = next(line.split() for line in table.splitlines() if line.split()[:1] == [f"--{key.replace('_', '-')}"])
        assert row[1:] == [f"{p[key]:g}" if isinstance(p[key], float) else str(p[key]) for p in train.PRESETS.values()]
    assert "(default: 100)" not in text and "(default: 0.1)" not in text     # no generic default that never applies


def test_the_preset_flags_default_to_the_preset_and_say_so():
    """Every preset sets the same flags; the parser leaves each at None and its help points at the table; every
    other flag's --help default is what parse([]) resolves (apart from the shared flags resolved at run time)."""
    assert len({frozenset(p) for p in train.PRESETS.values()}) == 1
    parser = train.build_parser()
    raw, resolved = vars(parser.parse_args([])), vars(train.parse(["--out", "/tmp/unused"]))
    for dest, default in raw.items():
        if dest in train.PRESETS["mnist"]:
            assert default is None and resolved[dest] == train.PRESETS["mnist"][dest], dest
        elif dest not in ("out", "wandb", "threads", "data_root"):
            assert resolved[dest] == default, dest
    shown = " ".join(parser.format_help().split())
    assert shown.count("(default: from the --dataset preset, see the table below)") == len(train.PRESETS["mnist"])


def test_the_schedules_are_common_schedules_and_step_is_refused(capsys):
    from common.schedules import SCHEDULES
    assert set(train.SCHEDULES) <= set(SCHEDULES)
    assert train.parse(["--out", "/tmp/unused", "--schedule", "milestones"]).schedule == "milestones"
    with pytest.raises(SystemExit) as exit_:
        train.parse(["--out", "/tmp/unused", "--schedule", "step"])    # DFAD's step schedule is 'milestones' now
    assert exit_.value.code == 2 and "invalid choice: 'step'" in capsys.readouterr().err


def test_train_teacher_resolves_family_and_augmentation_from_the_dataset():
    assert train_teacher.build_parser().get_default("model") is None
    assert (train_teacher.parse(["--out", "/tmp/unused"]).model, train_teacher.parse(["--out", "/tmp/u"]).augment) \
        == ("lenet5", "none")
    cifar = train_teacher.parse(["--dataset", "cifar10", "--out", "/tmp/unused"])
    assert (cifar.model, cifar.augment) == ("resnet", "crop_flip")
    assert train_teacher.parse(["--dataset", "cifar10", "--model", "resnet34", "--out", "/tmp/u"]).model == "resnet34"


# teacher files -----------------------------------------------------------------------------------------

def published_layout(model) -> dict:
    """A resnet_norms ResNet's weights under the published files' key names (module.layer1.0.bn1.weight)."""
    out = {}
    for key, value in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        key = key.replace("stem_conv.", "conv1.").replace("stem_norm.", "bn1.").replace("head.", "linear.")
        if key.startswith("stages."):
            _, stage, block, rest = key.split(".", 3)
            key = f"layer{int(stage) + 1}.{block}.{rest.replace('norm', 'bn')}"
        out[f"module.{key}"] = value
    return out


@pytest.fixture(scope="module")
def fake_published(tmp_path_factory):
    """A ResNet-20 in the published file format (random weights): the pretrained path without ../shared."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("pre") / "resnet20-fake.th"
    torch.save({"state_dict": published_layout(build_resnet(ResNetConfig(n=3))), "best_prec1": 12.5}, path)
    return path


def test_a_published_resnet_file_loads_as_a_frozen_resnet_teacher(fake_published):
    teacher = load_teacher(fake_published)
    assert teacher.family == "resnet" and teacher.config.depth == 20 and not teacher.model.training
    assert teacher.mean == DATASETS["cifar10"][1] and "ResNet-20" in teacher.source


@pytest.mark.skipif(not PRETRAINED.exists(), reason="needs ../shared/data/pretrained")
def test_pretrained_shorthand_finds_the_shared_file():
    path = teachers.resolve_teacher_path("pretrained:resnet20", REPO.parent / "shared" / "data")
    assert path.name.startswith("resnet20-") and load_teacher(path).config.depth == 20


def test_pretrained_shorthand_without_the_file_is_one_line(tmp_path):
    with pytest.raises(UserError, match="no resnet56-\\*.th in"):
        teachers.resolve_teacher_path("pretrained:resnet56", tmp_path)


def _exit_line(argv, capsys) -> str:
    with pytest.raises(SystemExit) as exit_:
        run_cli(train.main, argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.strip().count("\n") == 0 and "Traceback" not in err, err
    return err


def test_a_corrupt_teacher_file_is_one_line(tmp_path, capsys):
    bad = tmp_path / "teacher.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    assert "corrupt checkpoint" in _exit_line(["--smoke", "--teacher", str(bad), "--out", str(tmp_path / "r")], capsys)
    assert not (tmp_path / "r").exists()


def test_a_teacher_of_another_architecture_is_one_line(tmp_path, capsys):
    lenet = build("lenet5", LeNet5Config())
    wrong = model_config_dict(lenet, (0.5,), (0.5,)) | {"channels": [6, 16, 32]}     # a config that does not build
    save_checkpoint(tmp_path / "a.pt", {"model_config": wrong, "model": lenet.state_dict()})
    assert "does not hold a dfad_kd model" in _exit_line(
        ["--smoke", "--teacher", str(tmp_path / "a.pt"), "--out", str(tmp_path / "r")], capsys)
    other = build("lenet5", LeNet5Config(channels=(4, 8)))                           # weights of another shape
    save_checkpoint(tmp_path / "b.pt", {"model_config": model_config_dict(lenet, (0.5,), (0.5,)),
                                        "model": other.state_dict()})
    assert "does not hold a dfad_kd model" in _exit_line(
        ["--smoke", "--teacher", str(tmp_path / "b.pt"), "--out", str(tmp_path / "r")], capsys)
    state = published_layout(build_resnet(ResNetConfig(n=1)))
    state["module.linear.weight"] = torch.zeros(10, 7)                                 # published layout, wrong shape
    torch.save({"state_dict": state}, tmp_path / "c.th")
    assert "does not fit" in _exit_line(["--smoke", "--dataset", "cifar10", "--teacher", str(tmp_path / "c.th"),
                                         "--out", str(tmp_path / "r")], capsys)
    save_checkpoint(tmp_path / "d.pt", {"weights": torch.zeros(3)})                   # another program's file
    assert "is not a dfad_kd checkpoint" in _exit_line(
        ["--smoke", "--teacher", str(tmp_path / "d.pt"), "--out", str(tmp_path / "r")], capsys)


def test_a_teacher_of_another_data_set_is_one_line(fake_published, tmp_path, capsys):
    err = _exit_line(["--smoke", "--dataset", "mnist", "--teacher", str(fake_published), "--out", str(tmp_path)],
                     capsys)
    assert "pick the teacher of this --dataset" in err


# end to end --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def smoke_teacher(tmp_path_factory):
    out = tmp_path_factory.mktemp("teacher") / "run"
    summary = train_teacher.main(["--smoke", "--out", str(out)])
    return out / "checkpoint.pt", summary


def _records(path):
    return [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]


def test_train_teacher_smoke_writes_a_checkpoint_train_py_reloads(smoke_teacher):
    path, summary = smoke_teacher
    for name in ("config.json", "metrics.jsonl", "summary.json", "curves.png"):
        assert (path.parent / name).stat().st_size > 0, name
    teacher = load_teacher(path)
    assert teacher.family == "lenet5" and teacher.mean == (0.1307,) and summary["parameters"] == 61_706
    assert {"test_acc", "test_acc_10", "test_acc_20"} <= set(summary)


def test_dfad_smoke_writes_every_artefact(smoke_teacher, tmp_path):
    out = tmp_path / "run"
    summary = train.main(["--smoke", "--teacher", str(smoke_teacher[0]), "--out", str(out)])
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "best.pt", "curves.png",
                 "class_histogram.png", "generated.png", "samples/epoch_001.png", "samples/epoch_002.png"):
        assert (out / name).stat().st_size > 0, name
    record = _records(out)[-1]
    for key in ("loss_s", "loss_g", "class_entropy", "class_hist", "agree_input", "agree_real", "test_acc_10",
                "test_acc_20"):
        assert key in record, key
    assert 0 <= record["class_entropy"] <= 1 and sum(record["class_hist"]) == pytest.approx(1)
    assert summary["parameter_ratio"] == pytest.approx(0.2, abs=0.01) and summary["teacher_parameters"] == 61_706
    student = model_from_checkpoint(load_checkpoint(out / "best.pt"))     # rebuilt without the CLI
    assert student.config.describe() == summary["student_model"]


@pytest.mark.parametrize("method", ["noise", "real", "labels"])
def test_baselines_run_without_a_generator(smoke_teacher, tmp_path, method):
    out = tmp_path / method
    summary = train.main(["--smoke", "--method", method, "--teacher", str(smoke_teacher[0]), "--out", str(out)])
    record = _records(out)[-1]
    assert summary["method"] == method and "loss_g" not in record and not (out / "generated.png").exists()
    assert ("class_hist" in record) == (method != "labels")
    assert len(_records(out)) == 2


@pytest.mark.slow
def test_kill_and_resume_equals_an_uninterrupted_run(smoke_teacher, tmp_path, monkeypatch):
    flags = ["--smoke", "--teacher", str(smoke_teacher[0]), "--epochs", "2"]
    whole = train.main(flags + ["--out", str(tmp_path / "whole")])
    real_call, calls = evaluation.Evaluator.__call__, {"n": 0}

    def killed_in_epoch_2(self, student):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_call(self, student)

    monkeypatch.setattr(evaluation.Evaluator, "__call__", killed_in_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.main(flags + ["--out", str(tmp_path / "split")])
    assert [r["epoch"] for r in _records(tmp_path / "split")] == [1]
    monkeypatch.setattr(evaluation.Evaluator, "__call__", real_call)
    resumed = train.main(flags + ["--out", str(tmp_path / "split"), "--resume"])
    a, b = _records(tmp_path / "whole"), _records(tmp_path / "split")
    assert len(a) == len(b) == 2
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k != "train_seconds"} == {k: v for k, v in y.items()
                                                                        if k != "train_seconds"}
    assert resumed["test_acc"] == whole["test_acc"] and resumed["best_test_acc"] == whole["best_test_acc"]


@pytest.mark.slow
def test_without_a_teacher_one_is_trained_first_and_kept_on_resume(tmp_path):
    out = tmp_path / "run"
    first = train.main(["--smoke", "--out", str(out)])
    assert (out / "teacher" / "checkpoint.pt").exists() and first["teacher_parameters"] == 61_706
    stamp = (out / "teacher" / "checkpoint.pt").stat().st_mtime_ns
    again = train.main(["--smoke", "--out", str(out), "--resume", "--epochs", "2"])
    assert (out / "teacher" / "checkpoint.pt").stat().st_mtime_ns == stamp
    assert again["test_acc"] == first["test_acc"]


@pytest.mark.slow
def test_a_refused_run_leaves_the_earlier_runs_teacher_as_it_was(tmp_path):
    """With no --teacher, train.py trained one into <out>/teacher (with --overwrite) before its own run folder was
    checked: the same command again, or another seed, was refused ('already holds a run') only after it had
    replaced the earlier run's teacher with its own. --out is now checked first."""
    out = tmp_path / "run"
    train.main(["--smoke", "--out", str(out)])
    teacher = out / "teacher" / "checkpoint.pt"
    stamp = teacher.stat().st_mtime_ns
    with pytest.raises(UserError, match="already holds a run"):
        train.main(["--data", "generated", "--epochs", "1", "--seed", "3", "--out", str(out)])
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "args": {**config["args"], "smoke": False}}))
    with pytest.raises(UserError, match="holds a run that is not a --smoke run"):
        train.main(["--smoke", "--out", str(out)])
    assert teacher.stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_a_published_resnet_teacher_distils_on_cifar_shapes(fake_published, tmp_path):
    summary = train.main(["--smoke", "--dataset", "cifar10", "--teacher", str(fake_published), "--student-ratio",
                          "0.1", "--out", str(tmp_path / "run")])
    assert summary["teacher_model"].startswith("ResNet-20")
    assert summary["parameter_ratio"] == pytest.approx(0.1, abs=0.01)


@pytest.mark.slow
def test_train_teacher_script_smoke_from_another_directory(tmp_path):
    done = run_script(str(REPO / "dfad_kd" / "train_teacher.py"), "--smoke", "--out", str(tmp_path / "t"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "t" / "checkpoint.pt").exists() and "done: teacher test acc" in done.stdout
    bad = run_script(str(REPO / "dfad_kd" / "train_teacher.py"), "--model", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0


@pytest.mark.slow
def test_report_builds_from_smoke_runs(smoke_teacher, tmp_path):
    specs = report.runs(quick=True)
    assert specs and len({s.name for s in specs}) == len(specs)
    results = {}
    for spec in specs:
        out = tmp_path / "runs" / spec.name
        argv = [*spec.args, "--smoke", "--data", "generated", "--out", str(out)]
        (train if spec.script == "train.py" else train_teacher).main(argv)
        results[spec.name] = load_result(spec.name, out)
    markdown = report.build(results, tmp_path / "report")
    assert "5.70 / 4.90" in markdown and "8.00 / 6.00" in markdown and "| Gaussian noise (data-free) |" in markdown
    assert "DFAD (generator, data-free) + balance 1" in markdown
    for line in markdown.splitlines():
        if line.startswith("!["):
            assert (tmp_path / line.split("](")[1].rstrip(")")).exists(), line
