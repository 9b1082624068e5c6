"""slot_attention: the model's symmetries, masks, the data (generated and CLEVRTex's real layout), the
training script (smoke artefacts, kill-and-resume, divergence stop, one-line errors), the library and
the report."""
import dataclasses
import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.metrics import adjusted_rand_score

import slot_attention.diagnose as diagnose_script
from common.divergence import DivergenceGuard
from common.errors import TrainingDiverged, UserError
from common.reporting import load_result
from common.schedules import halving, lr_lambda
from slot_attention import report, train
from slot_attention.data import generate_scenes, load_scenes, read_clevrtex
from slot_attention.diagnose import diagnose, interior_pixels
from slot_attention.library import (SlotLibrary, cluster_roles, compose, gaussian_slots, owned_regions,
                                    slot_roles)
from slot_attention.mask_ceiling import ceiling_segmentation, ceilings
from slot_attention.mask_ceiling import main as mask_ceiling_main
from slot_attention.model import (CONFIG_FLAGS, Encoder, SlotAttention, SlotAutoencoder, SlotConfig, SlotEncoder,
                                  SpatialBroadcastDecoder, mask_area_penalty)
from tests.conftest import REPO, kill_after_first_checkpoint, run_script

# the paper's model, small: Gaussian slots, no colour shortcut, stride 2, the decoder to the image size
TINY = SlotConfig(image_size=16, slots=5, slot_dim=12, encoder_channels=6, encoder_stride=2, mlp_hidden=10,
                  broadcast=4, decoder_channels=6, decoder_size=0, colour_shortcut=False, slot_init="gaussian")
TINY_FLAGS = ["--image-size", "16", "--slots", "4", "--slot-dim", "8", "--encoder-channels", "4",
              "--mlp-hidden", "8", "--broadcast", "4", "--decoder-channels", "4", "--decoder-size", "0",
              "--n-train", "24", "--n-val", "8", "--batch-size", "8", "--fid-samples", "0", "--library-images", "8",
              "--clusters", "3", "--grid-images", "2", "--warmup-steps", "2", "--wandb", "off", "--device", "cpu",
              "--data", "generated"]


def test_slot_attention_is_equivariant_in_the_slots_and_invariant_to_input_order():
    torch.manual_seed(0)
    module = SlotAttention(slots=6, dim=10, iterations=3, mlp_hidden=16).double()
    inputs, slots = torch.randn(2, 30, 10, dtype=torch.double), torch.randn(2, 6, 10, dtype=torch.double)
    out, attention = module(inputs, slots)
    perm_slots, perm_inputs = torch.randperm(6), torch.randperm(30)
    out_p, attention_p = module(inputs, slots[:, perm_slots])
    torch.testing.assert_close(out_p, out[:, perm_slots])
    torch.testing.assert_close(attention_p, attention[:, perm_slots])
    out_i, attention_i = module(inputs[:, perm_inputs], slots)
    torch.testing.assert_close(out_i, out)
    torch.testing.assert_close(attention_i, attention[:, :, perm_inputs])
    torch.testing.assert_close(attention.sum(dim=1), torch.ones(2, 30, dtype=torch.double))


def test_implicit_gradient_changes_the_gradient_path_not_the_forward_pass():
    torch.manual_seed(2)
    plain = SlotAttention(slots=3, dim=8, iterations=3, mlp_hidden=8)
    implicit = SlotAttention(slots=3, dim=8, iterations=3, mlp_hidden=8, implicit_grad=True)
    implicit.load_state_dict(plain.state_dict())
    inputs, slots = torch.randn(2, 10, 8), torch.randn(2, 3, 8, requires_grad=True)
    torch.testing.assert_close(implicit(inputs, slots)[0], plain(inputs, slots)[0])
    implicit(inputs, slots)[0].sum().backward()
    assert slots.grad is None          # the initial slots are cut off from the gradient


def test_learned_queries_keep_the_forward_pass_and_pass_the_gradient_straight_through():
    torch.manual_seed(3)
    plain = SlotAttention(slots=4, dim=8, iterations=3, mlp_hidden=8)
    learned = SlotAttention(slots=4, dim=8, iterations=3, mlp_hidden=8, init="learned")
    missing, unexpected = learned.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["queries"] and not unexpected      # a Gaussian model's weights still fit
    inputs = torch.randn(3, 10, 8)
    start = learned.initial_slots(3)                       # the same K queries for every image
    torch.testing.assert_close(start, learned.queries.expand(3, -1, -1))
    out, attention = learned(inputs)
    torch.testing.assert_close(out, plain(inputs, start.detach())[0])   # the forward pass is the paper's
    perm = torch.randperm(4)                               # still equivariant in the slots it is given
    torch.testing.assert_close(learned(inputs, start[:, perm])[0], out[:, perm])
    out.sum().backward()
    assert learned.queries.grad is not None and learned.queries.grad.abs().sum() > 0
    # straight through: the queries get exactly the last iteration's gradient with respect to its input
    two, one = (SlotAttention(slots=4, dim=8, iterations=n, mlp_hidden=8) for n in (2, 1))
    two.load_state_dict(plain.state_dict()), one.load_state_dict(plain.state_dict())
    before_last = two(inputs, start.detach())[0].detach().requires_grad_()
    one(inputs, before_last)[0].sum().backward()
    torch.testing.assert_close(learned.queries.grad[0], before_last.grad.sum(dim=0))
    assert learned.initial_slots(2, slots=6).shape == (2, 6, 8)   # cycled when more slots are asked for
    with pytest.raises(ValueError, match="slot init"):
        SlotConfig(slot_init="nope")
    assert SlotConfig.from_dict({k: v for k, v in TINY.to_dict().items() if k != "slot_init"}).slot_init == "gaussian"


def test_decoder_masks_sum_to_one_per_pixel_and_the_reconstruction_is_their_mixture():
    torch.manual_seed(1)
    model = SlotAutoencoder(TINY)
    out = model(torch.rand(3, 3, 16, 16))
    assert out["masks"].shape == (3, 5, 1, 16, 16) and out["rgb"].shape == (3, 5, 3, 16, 16)
    torch.testing.assert_close(out["masks"].sum(dim=1), torch.ones(3, 1, 16, 16))
    torch.testing.assert_close(out["recon"], (out["masks"] * out["rgb"]).sum(dim=1))
    assert out["slots"].shape == (3, 5, 12) and out["attention"].shape == (3, 5, 64)


def test_config_round_trips_and_the_encoder_is_reusable_without_the_decoder():
    with pytest.raises(UserError, match="no field.*unknown"):
        SlotConfig.from_dict({**TINY.to_dict(), "unknown": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        TINY.slots = 3
    assert "5 slots" in TINY.describe()
    encoder = SlotEncoder(TINY)       # what slot_diffusion imports
    assert not any(isinstance(m, SpatialBroadcastDecoder) for m in encoder.modules())
    slots, _ = encoder(torch.rand(2, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    assert slots.shape == (2, 5, 12)
    with pytest.raises(ValueError, match="power of two"):
        SlotConfig(image_size=48, broadcast=8)


@pytest.mark.parametrize("stride", [2, 4])
def test_colour_shortcut_adds_each_tokens_mean_patch_colour_and_old_configs_load_without_it(stride):
    config = dataclasses.replace(TINY, encoder_stride=stride, colour_shortcut=True)
    encoder = Encoder(config).double()
    with torch.no_grad():                     # silence the CNN: the tokens are then the shortcut alone
        encoder.cnn[-2].weight.zero_()
        encoder.cnn[-2].bias.zero_()
        encoder.position.project.weight.zero_()
        encoder.position.project.bias.zero_()
    encoder.mlp = torch.nn.Identity()
    images = torch.rand(2, 3, 16, 16, dtype=torch.double)
    tokens = encoder(images)                                                  # (2, N, D)
    side = 16 // stride
    x = images * 2 - 1
    means = x.reshape(2, 3, side, stride, side, stride).mean(dim=(3, 5))      # (2, 3, side, side) by hand
    expected = means.permute(0, 2, 3, 1).reshape(2, side * side, 3) @ encoder.colour.weight.T + encoder.colour.bias
    torch.testing.assert_close(tokens, expected)
    old = {k: v for k, v in TINY.to_dict().items() if k != "colour_shortcut"}   # a config written before the flag
    assert SlotConfig.from_dict(old).colour_shortcut is False
    assert "colour shortcut" in config.describe() and "colour shortcut" not in TINY.describe()
    assert Encoder(TINY).colour is None


@pytest.mark.parametrize("kind", ["flat", "textured"])
def test_generated_scenes_are_deterministic_with_masks_and_objects_in_range(kind):
    images, masks = generate_scenes(40, 32, kind, seed=3)
    again, _ = generate_scenes(40, 32, kind, seed=3)
    other, _ = generate_scenes(40, 32, kind, seed=4)
    assert images.shape == (40, 3, 32, 32) and images.dtype == np.uint8 and masks.shape == (40, 32, 32)
    assert np.array_equal(images, again) and not np.array_equal(images, other)
    low, high = {"flat": (2, 6), "textured": (3, 10)}[kind]
    objects = np.array([len(np.unique(m)) - 1 for m in masks])
    assert objects.max() <= high and objects.min() >= 1 and (masks == 0).any()
    for image, mask in zip(images[:5], masks[:5]):      # every object is drawn in its own pixels
        assert all(mask[mask == k].size for k in np.unique(mask))
        if kind == "flat":                              # flat: one colour per object
            for k in np.unique(mask):
                assert np.unique(image[:, mask == k], axis=1).shape[1] == 1


def _write_clevrtex(root, scenes=5, size=(40, 30), labels=3, mode="P"):
    rng = np.random.default_rng(0)
    for i in range(scenes):
        sub = root / "clevrtex_full" / str(i // 3)
        sub.mkdir(parents=True, exist_ok=True)
        stem = sub / f"CLEVRTEX_full_{i:06d}"
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 4), dtype=np.uint8), "RGBA").save(f"{stem}.png")
        mask = np.zeros((size[1], size[0]), np.uint8)
        for k in range(1, labels + 1):
            mask[4 * k:4 * k + 4, 10:30] = k
        picture = Image.fromarray(mask, "L")
        (picture.convert("P") if mode == "P" else picture).save(f"{stem}_flat.png")
        stem.with_suffix(".json").write_text(json.dumps({"image_index": i, "objects": [{"shape": "cube"}] * 3}))
    return root


def test_clevrtex_reader_reads_the_released_layout(tmp_path):
    root = _write_clevrtex(tmp_path / "data")
    images, masks = read_clevrtex(root / "clevrtex_full", 16, None)
    assert images.shape == (5, 3, 16, 16) and masks.shape == (5, 16, 16)
    assert set(np.unique(masks)) <= {0, 1, 2, 3} and masks.max() == 3
    assert read_clevrtex(root / "clevrtex_full", 16, 2)[0].shape[0] == 2     # --subsample
    data = load_scenes("real", root, kind="flat", image_size=16, n_train=4, n_val=1, subsample=None, seed=0)
    assert data.source.startswith("real: CLEVRTex (4 train / 1 val)") and data.val_images.shape == (1, 3, 16, 16)


def test_clevrtex_problems_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="CLEVRTex not found"):
        load_scenes("real", tmp_path, kind="flat", image_size=16, n_train=4, n_val=1, subsample=None, seed=0)
    root = _write_clevrtex(tmp_path / "a", labels=5)   # mask labels beyond the json's 3 objects
    with pytest.raises(UserError, match="out of range"):
        read_clevrtex(root / "clevrtex_full", 16, None)
    root = _write_clevrtex(tmp_path / "b")
    (root / "clevrtex_full" / "0" / "CLEVRTEX_full_000001.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(UserError, match="unreadable scene CLEVRTEX_full_000001"):
        read_clevrtex(root / "clevrtex_full", 16, None)
    root = _write_clevrtex(tmp_path / "c")
    (root / "clevrtex_full" / "1" / "CLEVRTEX_full_000004_flat.png").unlink()
    with pytest.raises(UserError, match="_flat.png mask"):
        read_clevrtex(root / "clevrtex_full", 16, None)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("slots") / "run"
    return out, train.main(["--smoke", "--out", str(out)])


def test_smoke_writes_every_artefact(smoke_run):
    out, summary = smoke_run
    for name in ("config.json", "metrics.jsonl", "summary.json", "checkpoint.pt", "curves.png", "masks.png",
                 "compositional.png", "gaussian_baseline.png", "slot_library.npz"):
        assert (out / name).stat().st_size > 0, name
    record = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for key in ("train_loss", "train_area_penalty", "val_loss", "val_ari", "val_fg_ari", "wall_seconds", "lr"):
        assert key in record, key
    assert 1 / 4 - 1e-6 <= record["train_area_penalty"] <= 1   # the smoke model's 4 slots
    assert -1 <= summary["val_fg_ari"] <= 1 and summary["data_source"].startswith("generated: flat")
    library = np.load(out / "slot_library.npz")
    assert library["slots"].shape[0] == 16 * 4 and len(library["roles"]) == 4
    assert len(library["slot_roles"]) == len(library["areas"]) == len(library["spreads"]) == 16 * 4
    assert set(library["slot_roles"]) <= {"background", "object", "empty"}
    assert library["areas"].sum() == pytest.approx(16)   # each image's pixels are won by exactly one slot
    assert summary["library"]["background_slots"] + summary["library"]["object_slots"] + \
        summary["library"]["empty_slots"] == 16 * 4


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_numbers(tmp_path, monkeypatch):
    # the mask-area penalty's weight ramps with the step count, which must carry over the restart
    flags = [*TINY_FLAGS, "--epochs", "2", "--area-penalty", "5", "--area-penalty-start", "1"]
    whole = train.main([*flags, "--out", str(tmp_path / "whole")])
    kill_after_first_checkpoint(train.main, [*flags, "--out", str(tmp_path / "split")], monkeypatch)
    resumed = train.main([*flags, "--out", str(tmp_path / "split"), "--resume"])
    for key in ("train_loss", "val_loss", "val_ari", "val_fg_ari"):
        assert resumed[key] == pytest.approx(whole[key], rel=1e-6, abs=1e-9), key


def test_a_diverging_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real_loss = train.reconstruction_loss

    def loss_that_blows_up(recon, images):
        calls["n"] += 1
        loss = real_loss(recon, images)
        return loss * float("nan") if calls["n"] == 5 else loss   # step 5 = the 2nd step of epoch 2
    monkeypatch.setattr(train, "reconstruction_loss", loss_that_blows_up)
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match=r"became nan at step 5 \(epoch 2\); the last good checkpoint "
                                               r"\(epoch 1\) is kept"):
        train.main([*TINY_FLAGS, "--epochs", "3", "--out", str(out)])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 1 and len((out / "metrics.jsonl").read_text().splitlines()) == 1


def test_divergence_guard_catches_an_exploding_finite_loss():
    scheduler = type("S", (), {"last_epoch": 40})()
    guard = DivergenceGuard(10.0, REPO / "runs", scheduler)
    for _ in range(30):
        guard.check(torch.tensor(0.05), epoch=0)
    with pytest.raises(TrainingDiverged, match="exploded to 5 .* at step 41"):
        guard.check(torch.tensor(5.0), epoch=0)


def one_hot_masks(labels: torch.Tensor, slots: int) -> torch.Tensor:
    """(H, W) slot labels -> (1, K, 1, H, W) hard masks."""
    return torch.nn.functional.one_hot(labels, slots).permute(2, 0, 1)[None, :, None].float()


def test_mask_area_penalty_is_the_sum_of_squared_shares_and_prefers_splitting_the_largest_segment():
    torch.manual_seed(0)
    masks = torch.softmax(torch.randn(3, 5, 1, 8, 8), dim=1)
    by_hand = sum(sum(float(masks[b, k].mean()) ** 2 for k in range(5)) for b in range(3)) / 3
    assert float(mask_area_penalty(masks)) == pytest.approx(by_hand, rel=1e-5)
    assert float(mask_area_penalty(torch.full((2, 4, 1, 6, 6), 0.25))) == pytest.approx(1 / 4)
    assert float(mask_area_penalty(one_hot_masks(torch.zeros(6, 6, dtype=torch.long), 4))) == pytest.approx(1.0)
    scene = torch.zeros(8, 8, dtype=torch.long)     # background (48 pixels) in slot 0, an object (16) in slot 1
    scene[6:] = 1
    background_split, object_split = scene.clone(), scene.clone()
    background_split[:3] = 2                         # the spare slot 2 takes half the background
    object_split[7:] = 2                             # ... or half the object
    base, split_bg, split_obj = (float(mask_area_penalty(one_hot_masks(s, 4)))
                                 for s in (scene, background_split, object_split))
    assert split_bg < split_obj < base


def test_area_penalty_weight_is_zero_until_its_start_then_ramps_to_its_weight():
    weight = train.area_penalty_weight
    assert weight(2499, 0.02, 2500) == 0 and weight(2500, 0.02, 2500) == 0
    assert weight(3000, 0.02, 2500, ramp=1000) == pytest.approx(0.01)
    assert weight(3500, 0.02, 2500, ramp=1000) == pytest.approx(0.02) == weight(10 ** 6, 0.02, 2500)
    assert weight(10 ** 6, 0.0, 0) == 0


def test_lr_warms_up_then_halves_every_decay_steps():
    factor = lr_lambda(halving(100), 0, 10)
    assert factor(0) == pytest.approx(0.1) and factor(9) == pytest.approx(1.0)
    assert factor(110) == pytest.approx(0.5) and factor(210) == pytest.approx(0.25)


@pytest.mark.slow
@pytest.mark.parametrize("flags, message", [
    (["--slots", "0"], "positive integer"),
    (["--image-size", "48"], "power of two"),
    (["--implicit-grad"], "--implicit-grad acts only with --slot-init gaussian"),
    (["--data", "real", "--data-root", "{tmp}"], "CLEVRTex not found"),
])
def test_bad_inputs_are_one_line_errors_with_exit_2(tmp_path, flags, message):
    flags = [f.replace("{tmp}", str(tmp_path)) for f in flags]
    done = run_script(str(REPO / "slot_attention/train.py"), *flags, "--out", str(tmp_path / "run"),
                      "--wandb", "off", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr and done.stderr.strip().count("\n") == 0


def test_owned_regions_match_numpy_on_hand_made_masks():
    labels = np.zeros((8, 8), np.int64)
    labels[1:3, 2:6] = 1                                   # a 2x4 block
    labels[7, 7] = 2                                       # a single pixel
    masks = torch.nn.functional.one_hot(torch.from_numpy(labels), 4).permute(2, 0, 1).float()
    masks = (masks * 5).softmax(dim=0)[None, :, None]      # (1, 4, 1, 8, 8): soft, argmax = labels
    area, spread = owned_regions(masks)
    for k in range(4):
        rows, cols = np.nonzero(labels == k)
        assert area[0, k].item() == pytest.approx(len(rows) / 64)
        expected = np.sqrt(np.var((cols + 0.5) / 8) + np.var((rows + 0.5) / 8)) if len(rows) else 0.0
        assert spread[0, k].item() == pytest.approx(expected, abs=1e-6)
    assert spread[0, 2].item() == 0.0 and area[0, 3].item() == 0.0   # one pixel; a slot that owns nothing


def test_slot_roles_from_area_and_spread():
    areas = np.array([0.6, 0.05, 0.08, 0.001, 0.05])
    spreads = np.array([0.3, 0.08, 0.35, 0.0, 0.19])
    roles = slot_roles(areas, spreads)
    assert roles.tolist() == ["background", "object", "background", "empty", "object"]   # large; compact; scattered
    assert cluster_roles(np.array([0, 0, 1, 1, 1]), np.array(["background", "object", "object", "empty", "object"]),
                         3) == ["background", "object", "empty"]   # ties: the first role; no members: empty


def test_composition_takes_one_scenes_background_and_objects_from_others():
    # scene 0: background split over two slots (0, 1) + one object (2); scene 1: one background (3) + one object (4)
    roles = np.array(["background", "background", "object", "background", "object", "empty"])
    library = SlotLibrary(np.arange(12, dtype=np.float32).reshape(6, 2), np.array([0.1, 0.1, 0.05, 0.6, 0.04, 0.0]),
                          np.array([0.3, 0.3, 0.1, 0.3, 0.1, 0.0]), np.array([0, 0, 0, 1, 1, 1]),
                          np.array([0, 0, 1, 0, 1, 2]), np.zeros((3, 2), np.float32), roles,
                          ["background", "object", "empty"])
    sets = [s[:, 0].astype(int) // 2 for s in compose(library, 20, seed=0)]   # back to slot indices
    assert {tuple(s) for s in sets} == {(0, 1, 4), (3, 2)}   # a scene's whole background + one object from the other
    assert library.role_counts() == {"background": 1, "object": 1, "empty": 1, "background_slots": 3,
                                     "object_slots": 2, "empty_slots": 1}


def test_mask_ceiling_is_exact_at_full_resolution_and_costs_at_coarse_grids():
    masks = torch.from_numpy(generate_scenes(20, 32, "flat", 0, "val")[1]).long()
    assert torch.equal(ceiling_segmentation(masks, 32), masks)   # the full grid gives the segments back
    scores = ceilings(masks, [4, 8, 32])
    assert scores[32]["fg_ari"] == pytest.approx(1.0) and scores[4]["fg_ari"] < scores[8]["fg_ari"] < 1.0
    with pytest.raises(UserError, match="larger than the image"):
        mask_ceiling_main(["--image-size", "16", "--scenes", "2", "--sizes", "32"])


def test_gaussian_baseline_draws_fresh_slots_for_learned_queries_too():
    for init in ("gaussian", "learned"):
        torch.manual_seed(0)
        model = SlotAutoencoder(SlotConfig(image_size=16, slots=3, slot_dim=8, encoder_channels=4, mlp_hidden=8,
                                           decoder_channels=4, slot_init=init))
        slots = gaussian_slots(model, 2000, seed=0)
        assert slots.shape == (2000, 3, 8) and not torch.allclose(slots[0], slots[1])
        assert torch.equal(slots, gaussian_slots(model, 2000, seed=0))   # seeded
        attention = model.slot_encoder.slot_attention
        if init == "learned":   # each slot ~ N(mean, std^2) of the queries, per dimension
            queries = attention.queries[0].detach()
            mean, std = queries.mean(0), queries.std(0)
        else:
            mean, std = attention.mu[0, 0].detach(), attention.log_sigma[0, 0].exp().detach()
        drawn = slots.flatten(0, 1)
        assert torch.allclose(drawn.mean(0), mean, atol=4 * std.max().item() / 77)
        assert torch.allclose(drawn.std(0), std, rtol=0.05)


def test_report_builds_from_run_directories(smoke_run, tmp_path):
    out, summary = smoke_run
    specs = report.runs(True)
    assert specs and all("--epochs" in s.args for s in specs)
    results = {spec.name: load_result(spec.name, out) for spec in specs}
    markdown = report.build(results, tmp_path / "slot_attention")
    assert "FG-ARI" in markdown and summary["data_source"].split(" (")[0] in markdown
    for line in markdown.splitlines():
        if line.startswith("!["):
            assert (tmp_path / line.split("](")[1].rstrip(")")).exists(), line


def test_diagnosis_separates_cut_objects_from_shared_segments_on_hand_made_segmentations():
    true = torch.zeros(1, 8, 8, dtype=torch.long)
    true[0, 1:7, 0:4], true[0, 1:7, 4:8] = 1, 2                              # two 6x4 objects side by side
    perfect = diagnose(true, true.clone())
    assert perfect == {**perfect, "fg_ari": 1.0, "interior_fg_ari": 1.0, "uncut_fg_ari": 1.0, "largest_share": 1.0,
                       "cut_objects": 0.0, "shared_objects": 0.0, "objects": 2}
    cut = true.clone()
    cut[0, 4:7, 0:4] = 3                                                     # object 1 cut in two halves
    scores = diagnose(true, cut)
    foreground = (true[0] > 0).flatten()
    assert scores["fg_ari"] == pytest.approx(adjusted_rand_score(true[0].flatten()[foreground],
                                                                 cut[0].flatten()[foreground]))
    assert scores["fg_ari"] < 1 and scores["uncut_fg_ari"] == 1.0            # the merge undoes the cut
    assert scores["largest_share"] == 0.75 and scores["cut_objects"] == 0.5 and scores["shared_objects"] == 0.0
    shared = diagnose(true, (true > 0).long())                               # both objects in one segment
    assert shared["fg_ari"] == 0.0 and shared["uncut_fg_ari"] == 0.0 and shared["shared_objects"] == 1.0
    labels = torch.randint(0, 3, (2, 9, 9))
    expected = torch.zeros_like(labels, dtype=torch.bool)
    for b, y, x in np.ndindex(2, 9, 9):                                      # brute force: one label in 5x5
        window = labels[b, max(y - 2, 0):y + 3, max(x - 2, 0):x + 3]
        expected[b, y, x] = bool((window == labels[b, y, x]).all())
    assert torch.equal(interior_pixels(labels, 2), expected)


def test_diagnose_reads_a_run_and_scores_as_training_did(smoke_run, tmp_path):
    out, summary = smoke_run
    result = diagnose_script.main([str(out)])
    assert result["fg_ari"] == pytest.approx(summary["val_fg_ari"])
    assert result["ari"] == pytest.approx(summary["val_ari"])
    assert 0 <= result["largest_share"] <= 1 and result["objects"] > 0
    with pytest.raises(UserError, match="no config.json"):
        diagnose_script.main([str(tmp_path)])
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(UserError, match="cannot read .*config.json \\(JSONDecodeError\\); restore the config.json"):
        diagnose_script.main([str(tmp_path)])
    saved = json.loads((out / "config.json").read_text())
    for key, value, needle in (("n_val", -5, "argument --n-val: expected a positive integer, got -5"),
                               ("image_size", "x", "argument --image-size: invalid positive_int value: 'x'"),
                               ("stand_in", 5, "argument --stand-in: invalid choice: '5'")):
        (tmp_path / "config.json").write_text(json.dumps({**saved, "args": {**saved["args"], key: value}}))
        with pytest.raises(UserError, match=f"config.json holds flags slot_attention/train.py refuses \\({needle}"):
            diagnose_script.main([str(tmp_path)])   # a ValueError / TypeError traceback before
    del saved["args"]["n_val"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    with pytest.raises(UserError, match="config.json holds no n_val; restore"):
        diagnose_script.main([str(tmp_path)])


def test_the_flags_defaults_are_slot_configs_and_config_fields_it_did_not_have_keep_their_old_meaning(tmp_path):
    parser, recipe = train.build_parser(), SlotConfig()
    for name in CONFIG_FLAGS:                       # --help shows SlotConfig's defaults: the measured recipe
        assert parser.get_default(name) == getattr(recipe, name), name
    assert parser.get_default("image_size") == recipe.image_size
    args = train.parse(["--out", str(tmp_path / "run")])
    assert train.model_config(args) == recipe
    assert (recipe.slot_init, recipe.colour_shortcut, recipe.encoder_stride, recipe.decoder_size) == ("learned", True,
                                                                                                     4, 16)
    old = {k: v for k, v in recipe.to_dict().items() if k not in ("slot_init", "colour_shortcut")}
    assert SlotConfig.from_dict(old) == dataclasses.replace(recipe, slot_init="gaussian", colour_shortcut=False)


def test_implicit_grad_is_refused_where_it_would_do_nothing(tmp_path):
    with pytest.raises(UserError, match="--implicit-grad acts only with --slot-init gaussian"):
        train.parse(["--implicit-grad", "--out", str(tmp_path / "a")])
    args = train.parse(["--implicit-grad", "--slot-init", "gaussian", "--out", str(tmp_path / "b")])
    assert train.model_config(args).implicit_grad
    with pytest.raises(ValueError, match="implicit_grad acts only with slot_init 'gaussian'"):
        SlotConfig(implicit_grad=True)
