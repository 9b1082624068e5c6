"""slot_diffusion: the DDPM arithmetic against its closed form and against diffusers' schedulers (the test
oracle, imported only here), the UNet's shapes and slot symmetries, the VAE's latent shape, the training
script (smoke artefacts for train.py and train_vae.py, kill-and-resume, one-line errors) and the report."""
import json

import numpy as np
import pytest
import torch

from common.errors import UserError
from common.reporting import load_result
from slot_attention import train as slot_attention_train
from slot_attention.model import ENCODER_FIELDS, SlotConfig
from slot_diffusion import report, train, train_vae
from slot_diffusion.ddpm import Diffusion, make_betas
from slot_diffusion.model import SlotDiffusion, SlotDiffusionConfig, attention_masks
from slot_diffusion.unet import UNet
from slot_diffusion.vae import VAE, VAEConfig
from tests.conftest import REPO, kill_after_first_checkpoint, run_script

diffusers = pytest.importorskip("diffusers")

TINY_FLAGS = ["--image-size", "16", "--slots", "3", "--slot-dim", "8", "--encoder-channels", "4", "--mlp-hidden", "8",
              "--unet-widths", "8,16", "--attention-levels", "1", "--heads", "2", "--timesteps", "50",
              "--sample-steps", "3", "--n-train", "24", "--n-val", "8", "--batch-size", "8", "--fid-samples", "0",
              "--library-images", "8", "--clusters", "3", "--grid-images", "2", "--warmup-steps", "2",
              "--wandb", "off", "--device", "cpu", "--data", "generated", "--threads", "1"]


@pytest.fixture(autouse=True)
def one_thread():
    """Small models on a shared CPU run faster on one thread (common/runtime.free_cores); restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _scheduler(cls, schedule: str, steps: int, **kw):
    name = {"linear": "linear", "cosine": "squaredcos_cap_v2"}[schedule]
    return cls(num_train_timesteps=steps, beta_schedule=name, clip_sample=False, **kw)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_forward_process_mean_and_variance_match_the_closed_form(schedule):
    diffusion = Diffusion(schedule, 200)
    betas = make_betas(schedule, 200)
    assert betas.min() > 0 and betas.max() < 1
    z0 = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    t = torch.tensor([0, 17, 120, 199])
    abar = torch.tensor([float(np.prod([1 - float(b) for b in betas[:s + 1]])) for s in t], dtype=torch.float64)
    mean, variance = diffusion.q_mean_variance(z0, t)
    torch.testing.assert_close(mean, abar.sqrt()[:, None, None, None] * z0)
    torch.testing.assert_close(variance, (1 - abar)[:, None, None, None].expand_as(z0))
    # add_noise draws from that Gaussian: empirical mean and variance over many draws
    z0 = torch.full((20000,), 1.5, dtype=torch.float64)
    draws = diffusion.add_noise(z0, torch.randn(20000, generator=torch.Generator().manual_seed(0),
                                                dtype=torch.float64), torch.full((20000,), 120))
    assert float(draws.mean()) == pytest.approx(float(abar[2].sqrt() * 1.5), abs=0.03)
    assert float(draws.var()) == pytest.approx(float(1 - abar[2]), abs=0.03)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_add_noise_equals_diffusers(schedule):
    oracle = _scheduler(diffusers.DDPMScheduler, schedule, 1000)
    ours = Diffusion(schedule, 1000)
    torch.testing.assert_close(ours.alphas_cumprod.float(), oracle.alphas_cumprod, rtol=1e-5, atol=1e-6)
    z0, noise = torch.randn(6, 3, 8, 8), torch.randn(6, 3, 8, 8)
    t = torch.tensor([0, 1, 250, 500, 998, 999])
    torch.testing.assert_close(ours.add_noise(z0, noise, t), oracle.add_noise(z0, noise, t), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("inference_steps", [None, 20])
def test_one_ancestral_step_equals_diffusers(schedule, inference_steps):
    steps = 1000
    oracle = _scheduler(diffusers.DDPMScheduler, schedule, steps)
    ours = Diffusion(schedule, steps)
    if inference_steps:
        oracle.set_timesteps(inference_steps)
        assert ours.timesteps(inference_steps) == oracle.timesteps.tolist()
        kept = ours.timesteps(inference_steps)
        pairs = [(kept[i], kept[i + 1] if i + 1 < len(kept) else -1) for i in (0, 5, len(kept) - 1)]
    else:
        pairs = [(999, 998), (500, 499), (1, 0), (0, -1)]
    torch.manual_seed(0)
    z_t, eps = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    for t, prev in pairs:
        expected = oracle.step(eps, t, z_t, generator=torch.Generator().manual_seed(7)).prev_sample
        noise = torch.randn(z_t.shape, generator=torch.Generator().manual_seed(7))
        got = ours.ddpm_step(eps, t, z_t, noise, prev=prev)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
        mean, variance = ours.posterior(ours.predict_z0(z_t, eps, t), z_t, t, prev)
        assert variance == pytest.approx(float(oracle._get_variance(t)), rel=2e-3, abs=1e-12)  # float32 there


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_one_ddim_step_equals_diffusers(eta):
    oracle = _scheduler(diffusers.DDIMScheduler, "linear", 1000)
    oracle.set_timesteps(25)
    ours = Diffusion("linear", 1000)
    assert ours.timesteps(25) == oracle.timesteps.tolist()
    kept = ours.timesteps(25)
    z_t, eps = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)
    for i in (0, 12, 24):
        t, prev = kept[i], kept[i + 1] if i + 1 < len(kept) else -1
        expected = oracle.step(eps, t, z_t, eta=eta, generator=torch.Generator().manual_seed(3)).prev_sample
        noise = torch.randn(z_t.shape, generator=torch.Generator().manual_seed(3))
        torch.testing.assert_close(ours.ddim_step(eps, t, z_t, prev, eta, noise), expected, rtol=1e-4, atol=1e-4)


def test_a_whole_ancestral_chain_from_pure_noise_equals_diffusers():
    """Sampling loop: the same noise (one generator, drawn in the same order) and a fixed eps model."""
    ours, oracle = Diffusion("linear", 100), _scheduler(diffusers.DDPMScheduler, "linear", 100)
    oracle.set_timesteps(10)

    def predict(z, t):
        return 0.3 * z + 0.01 * t.float()[:, None, None, None]
    got = ours.sample(predict, (2, 3, 4, 4), steps=10, generator=torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)
    z = torch.randn((2, 3, 4, 4), generator=generator)
    for t in oracle.timesteps:
        z = oracle.step(predict(z, t.repeat(2)), int(t), z, generator=generator).prev_sample
    torch.testing.assert_close(got, z, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("widths, size", [((8, 16), (8, 8)), ((8, 16), (16, 16)), ((8, 16, 16), (32, 32)),
                                          ((8, 16, 16), (8, 24)), ((16,), (5, 7))])
def test_unet_keeps_the_shape(widths, size):
    unet = UNet(channels=3, widths=widths, attention_levels=tuple(range(1, len(widths))), context_dim=6, heads=2)
    z = torch.randn(2, 3, *size)
    assert unet(z, torch.tensor([0, 999]), torch.randn(2, 4, 6)).shape == z.shape
    with pytest.raises(ValueError, match="multiples"):
        UNet(widths=(8, 16, 16), context_dim=6, heads=2)(torch.randn(1, 3, 6, 6), torch.tensor([1]),
                                                         torch.randn(1, 2, 6))


def test_changing_the_slots_changes_the_prediction_and_permuting_them_does_not():
    torch.manual_seed(0)
    unet = UNet(channels=3, widths=(8, 16), attention_levels=(1,), context_dim=6, heads=2).double().eval()
    z, t = torch.randn(2, 3, 8, 8, dtype=torch.double), torch.tensor([10, 700])
    slots = torch.randn(2, 5, 6, dtype=torch.double)
    out = unet(z, t, slots)
    torch.testing.assert_close(unet(z, t, slots[:, torch.randperm(5)]), out)
    other = slots.clone()
    other[:, 2] = torch.randn(2, 6, dtype=torch.double)   # (a constant shift would vanish in the LayerNorm)
    assert (unet(z, t, other) - out).abs().max() > 1e-4
    assert (unet(z, t + 1, slots) - out).abs().max() > 1e-6     # the timestep matters too


def test_the_vae_gives_3x32x32_latents_for_128px_images_and_decodes_back():
    vae = VAE(VAEConfig(stem=8, widths=(8, 16))).eval()
    images = torch.rand(2, 3, 128, 128)
    z = vae.encode(images)
    assert z.shape == (2, 3, 32, 32)
    decoded = vae.decode(z)
    assert decoded.shape == (2, 3, 128, 128)
    vae.scale.fill_(2.0)
    torch.testing.assert_close(vae.encode(images), 2 * z)               # the scale is applied and undone
    torch.testing.assert_close(vae.decode(vae.encode(images)), decoded)
    with pytest.raises(ValueError, match="multiples of 4"):
        vae.encode(torch.rand(1, 3, 30, 30))


def test_slot_diffusion_loss_masks_and_sampling():
    encoder = SlotConfig(image_size=16, slots=3, slot_dim=8, encoder_channels=4, mlp_hidden=8)
    config = SlotDiffusionConfig(encoder=encoder, latent_size=4, unet_widths=(8, 16), attention_levels=(1,), heads=2,
                                 timesteps=20)
    model = SlotDiffusion(config)
    assert SlotDiffusionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    images, latents = torch.rand(2, 3, 16, 16), torch.randn(2, 3, 4, 4)
    out = model(images, latents)
    assert out["loss"].shape == (2,) and out["masks"].shape == (2, 3, 1, 16, 16)
    torch.testing.assert_close(out["masks"].sum(dim=1), torch.ones(2, 1, 16, 16))
    out["loss"].mean().backward()
    assert model.slot_encoder.encoder.cnn[0].weight.grad.abs().sum() > 0     # the encoder learns from the loss
    slots = model(images)["slots"]
    first = model.sample_latents(slots, steps=5, generator=torch.Generator().manual_seed(0))
    again = model.sample_latents(slots, steps=5, generator=torch.Generator().manual_seed(0), sampler="ddim")
    assert first.shape == (2, 3, 4, 4) and torch.isfinite(first).all() and not torch.equal(first, again)
    masks = attention_masks(torch.softmax(torch.randn(1, 4, 16), dim=1), 8)
    torch.testing.assert_close(masks.sum(dim=1), torch.ones(1, 1, 8, 8))
    with pytest.raises(ValueError, match="multiple of the UNet"):
        SlotDiffusionConfig(latent_size=6, unet_widths=(8, 16, 16))


def test_the_encoder_is_slot_attentions_default_and_its_flags_come_from_slot_config(tmp_path):
    assert SlotDiffusionConfig().encoder == SlotConfig()
    parser, ours = slot_attention_train.build_parser(), train.build_parser()
    for name in ENCODER_FIELDS:
        assert ours.get_default(name) == parser.get_default(name) == getattr(SlotConfig(), name), name
    defaults = SlotDiffusionConfig()
    assert ours.get_default("unet_widths") == list(defaults.unet_widths) and ours.get_default("heads") == defaults.heads
    args = train.parse(["--out", str(tmp_path / "run")])
    assert train.model_config(args, latent_size=16) == defaults
    # --baseline train hands slot_attention the same encoder
    old_encoder = ["--slot-init", "gaussian", "--no-colour-shortcut", "--slots", "7"]
    args = train.parse([*old_encoder, "--out", str(tmp_path / "a")])
    baseline = slot_attention_train.parse([*train.encoder_flags(args), "--out", str(tmp_path / "b")])
    assert all(getattr(baseline, name) == getattr(args, name) for name in ENCODER_FIELDS)
    assert train.model_config(args, 16).encoder == slot_attention_train.model_config(baseline)
    assert train.model_config(args, 16).encoder.slots == 7
    with pytest.raises(UserError, match="--implicit-grad acts only with --slot-init gaussian"):
        train.parse(["--implicit-grad", "--out", str(tmp_path / "c")])


def test_a_failed_baseline_is_one_line_quoting_its_log(tmp_path):
    """--baseline train runs slot_attention/train.py as a child; its output is kept in <out>/baseline.log (it was
    captured and dropped), and a failure names the child's exit code, its last line and the log."""
    args = train.parse(["--smoke", "--baseline", "train", "--out", str(tmp_path / "run")])
    args.out.mkdir()
    (args.out / "baseline").write_text("a file where the baseline's run folder goes")
    with pytest.raises(UserError, match=r"the slot_attention baseline failed \(exit 2\): error: .*baseline.*; log: "
                                        r".*baseline\.log$"):
        train.obtain_baseline(args)
    assert "error:" in (args.out / "baseline.log").read_text()


def test_a_config_stored_before_the_encoder_field_rebuilds_the_encoder_it_had():
    old = {"image_size": 32, "channels": 3, "slots": 4, "iterations": 3, "slot_dim": 16, "encoder_channels": 8,
           "encoder_stride": 4, "mlp_hidden": 16, "implicit_grad": False, "latent_channels": 3, "latent_size": 8,
           "unet_widths": [16, 32], "unet_blocks": 1, "attention_levels": [1], "heads": 2, "schedule": "linear",
           "timesteps": 100}                        # a smoke run's model_config, as stored until 2026-12-06
    config = SlotDiffusionConfig.from_dict(old)
    encoder = config.encoder
    assert (encoder.slot_init, encoder.colour_shortcut, encoder.slots, encoder.encoder_channels) == ("gaussian", False,
                                                                                                     4, 8)
    assert config.unet_widths == (16, 32) and config.latent_size == 8
    keys = SlotDiffusion(config).state_dict()
    assert "slot_encoder.slot_attention.queries" not in keys and "slot_encoder.encoder.colour.weight" not in keys
    assert SlotDiffusionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(UserError, match="SlotDiffusionConfig has no field"):
        SlotDiffusionConfig.from_dict({**old, "unknown": 1})
    with pytest.raises(UserError, match="encoder must be a mapping"):
        SlotDiffusionConfig.from_dict({"encoder": 3})


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory):
    """train_vae.py --smoke, slot_attention --smoke (the baseline), then train.py --smoke with both."""
    root = tmp_path_factory.mktemp("slot_diffusion")
    vae = train_vae.main(["--smoke", "--out", str(root / "vae")])
    slot_attention_train.main(["--smoke", "--out", str(root / "baseline")])
    summary = train.main(["--smoke", "--out", str(root / "run"), "--vae", str(root / "vae" / "checkpoint.pt"),
                          "--baseline", str(root / "baseline" / "checkpoint.pt")])
    return root, vae, summary


def test_smoke_runs_write_every_artefact(smoke_runs):
    root, vae, summary = smoke_runs
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "curves.png", "reconstructions.png"):
        assert (root / "vae" / name).stat().st_size > 0, name
    assert vae["latent_shape"] == [3, 8, 8] and np.isfinite(vae["val_psnr"]) and vae["latent_scale"] > 0
    out = root / "run"
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "curves.png", "masks.png",
                 "compositional.png", "gaussian_baseline.png", "slot_library.npz", "side_by_side.png",
                 "baseline_compositional.png"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("train_loss", "val_loss", "val_ari", "val_fg_ari", "wall_seconds", "lr"):
        assert key in record, key
    assert -1 <= summary["val_fg_ari"] <= 1 and summary["data_source"].startswith("generated: flat")
    assert summary["sampling_seconds_per_image"] > 0 and summary["vae"]["latent_scale"] == pytest.approx(
        vae["latent_scale"])
    assert -1 <= summary["baseline"]["val_fg_ari"] <= 1 and summary["baseline"]["decoding_seconds_per_image"] > 0
    library = np.load(out / "slot_library.npz")
    assert library["slots"].shape == (16 * 4, 16)


def test_report_builds_from_run_directories(smoke_runs, tmp_path):
    root, _, summary = smoke_runs
    specs = report.runs(True)
    assert specs and all("--epochs" in s.args for s in specs)
    results = {spec.name: load_result(spec.name, root / "run") for spec in specs}
    markdown = report.build(results, tmp_path / "slot_diffusion")
    assert "FG-ARI" in markdown and "broadcast" in markdown and summary["data_source"].split(" (")[0] in markdown
    for line in markdown.splitlines():
        if line.startswith("!["):
            assert (tmp_path / line.split("](")[1].rstrip(")")).exists(), line


def test_a_checkpoint_of_another_kind_is_a_one_line_user_error(smoke_runs, tmp_path):
    root, _, _ = smoke_runs
    with pytest.raises(UserError, match="not a slot_diffusion/train_vae.py checkpoint|does not hold"):
        train.main(["--smoke", "--out", str(tmp_path / "a"), "--vae", str(root / "baseline" / "checkpoint.pt")])
    with pytest.raises(UserError, match="no checkpoint"):
        train.main(["--smoke", "--out", str(tmp_path / "b"), "--vae", str(tmp_path / "missing.pt")])


def test_resuming_a_run_of_the_old_encoder_defaults_names_the_flags_it_needs(smoke_runs, tmp_path):
    root, _, _ = smoke_runs
    flags = ["--smoke", "--out", str(tmp_path / "run"), "--vae", str(root / "vae" / "checkpoint.pt")]
    train.main([*flags, "--slot-init", "gaussian", "--no-colour-shortcut"])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    for name in ("slot_init", "colour_shortcut"):   # a run started before these flags existed
        del config["args"][name]
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="trained with --slot-init gaussian --no-colour-shortcut: resume with those"):
        train.main([*flags, "--resume"])


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_numbers(smoke_runs, tmp_path, monkeypatch):
    root, _, _ = smoke_runs
    vae = root / "vae16"
    train_vae.main(["--image-size", "16", "--vae-stem", "4", "--vae-widths", "4,8", "--epochs", "1", "--n-train", "24",
                    "--n-val", "8", "--batch-size", "8", "--data", "generated", "--wandb", "off", "--device", "cpu",
                    "--out", str(vae)])
    flags = [*TINY_FLAGS, "--epochs", "2", "--vae", str(vae / "checkpoint.pt")]
    whole = train.main([*flags, "--out", str(tmp_path / "whole")])
    kill_after_first_checkpoint(train.main, [*flags, "--out", str(tmp_path / "split")], monkeypatch)
    resumed = train.main([*flags, "--out", str(tmp_path / "split"), "--resume"])
    for key in ("train_loss", "val_loss", "val_ari", "val_fg_ari", "reconstruction_mse"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-6, abs=1e-9), key


@pytest.mark.slow
def test_train_vae_smoke_from_another_directory_and_bad_flags(tmp_path):
    done = run_script(str(REPO / "slot_diffusion/train_vae.py"), "--smoke", "--out", str(tmp_path / "vae"),
                      cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "vae" / "checkpoint.pt").exists() and list((tmp_path / "vae").glob("*.png"))
    done = run_script(str(REPO / "slot_diffusion/train.py"), "--image-size", "30", "--vae", str(tmp_path / "vae" /
                      "checkpoint.pt"), "--out", str(tmp_path / "run"), "--data", "generated", "--wandb", "off",
                      "--n-train", "8", "--n-val", "4", cwd=tmp_path)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().count("\n") == 0 and "--image-size" in done.stderr
