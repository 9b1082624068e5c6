"""sketch_rnn model: the GMM likelihood against a direct computation, its numerical safety, the masked
loss, attention, sampling shapes and the samplers' statistics."""
import math

import numpy as np
import pytest
import torch
from scipy.stats import multivariate_normal

from sketch_rnn.heads import GMMHead, SeedHead
from sketch_rnn.model import AdditiveAttention, SketchConfig, SketchGenerator, masks, sketch_loss, turning
from sketch_rnn.render import animate_live, segments, write_gif

TINY = dict(classes=["a", "b", "c"], embed_dim=6, prompt_len=3, encoder_hidden=5, decoder_hidden=8,
            attention_dim=4, mixtures=3, max_len=12)


def test_gmm_likelihood_matches_a_direct_mixture_of_bivariate_gaussians():
    torch.manual_seed(0)
    head = GMMHead(7, mixtures=4).double()
    features, target = torch.randn(2, 3, 7, dtype=torch.float64), torch.randn(2, 3, 2, dtype=torch.float64)
    params = head(features)
    nll = head.offset_loss(params, target)                                  # (2, 3)
    for b in range(2):
        for t in range(3):
            density = 0.0
            for m in range(4):
                sx, sy = params["log_sigma"][b, t, m].exp().tolist()
                rho = params["rho"][b, t, m].item()
                cov = [[sx * sx, rho * sx * sy], [rho * sx * sy, sy * sy]]
                density += params["log_pi"][b, t, m].exp().item() * multivariate_normal(
                    params["mu"][b, t, m].tolist(), cov).pdf(target[b, t].tolist())
            assert nll[b, t].item() == pytest.approx(-math.log(density), rel=1e-9)


def test_gmm_head_stays_finite_on_extreme_inputs():
    torch.manual_seed(0)
    head = GMMHead(4, mixtures=5)
    with torch.no_grad():
        head.out.weight.mul_(1e4)
    features = torch.tensor([[[1e3, -1e3, 1e4, -1e4]]], requires_grad=True)
    for target in (torch.full((1, 1, 2), 1e6), torch.zeros(1, 1, 2), torch.tensor([[[1e-9, -1e6]]])):
        loss = head.offset_loss(head(features), target).sum()
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(features.grad).all()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters())
        features.grad = None
        head.zero_grad()
    sample = head.sample({k: v[:, 0] for k, v in head(features).items()}, 1e-4, None)
    assert torch.isfinite(sample).all()


def test_seed_head_loss_is_mse_and_calibrate_sets_the_sampling_spread():
    head = SeedHead(5)
    params = head(torch.randn(2, 4, 5))
    target = torch.randn(2, 4, 2)
    torch.testing.assert_close(head.offset_loss(params, target).mean(),
                               torch.nn.functional.mse_loss(params["mean"], target))
    head.calibrate(torch.tensor([[3.0, 0.0], [-3.0, 4.0]]))
    torch.testing.assert_close(head.residual_std, torch.tensor([3.0, math.sqrt(8.0)]))


def test_gmm_sampling_matches_the_component_moments_and_temperature_shrinks_it():
    head = GMMHead(1, mixtures=2)
    params = {"logits": torch.tensor([[0.0, -50.0]]), "mu": torch.tensor([[[1.0, -2.0], [9.0, 9.0]]]),
              "log_sigma": torch.log(torch.tensor([[[0.5, 2.0], [1.0, 1.0]]])), "rho": torch.tensor([[0.6, 0.0]])}
    batch = {k: v.expand(20000, *v.shape[1:]) for k, v in params.items()}
    draws = head.sample(batch, 1.0, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(draws.mean(0), [1.0, -2.0], atol=0.05)
    np.testing.assert_allclose(np.cov(draws.T), [[0.25, 0.6], [0.6, 4.0]], atol=0.12)
    cold = head.sample(batch, 0.01, torch.Generator().manual_seed(0)).numpy()
    np.testing.assert_allclose(cold.std(0), [0.05, 0.2], rtol=0.05)


def _batch(lengths, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    stroke5 = torch.zeros(len(lengths), steps + 1, 5)
    stroke5[:, 0, 2] = 1
    for i, length in enumerate(lengths):
        stroke5[i, 1:length + 1, :2] = torch.randn(length, 2, generator=g)
        pen = torch.randint(0, 2, (length,), generator=g)
        stroke5[i, 1:length + 1, 2 + pen] = 0
        stroke5[i, torch.arange(1, length + 1), 2 + pen] = 1
        stroke5[i, length + 1:, 4] = 1
    return stroke5, torch.tensor(lengths)


@pytest.mark.parametrize("head", ["seed", "gmm"])
def test_loss_ignores_padding(head):
    torch.manual_seed(0)
    model = SketchGenerator(SketchConfig(head=head, **TINY))
    stroke5, lengths = _batch([3, 6], steps=8)
    labels = torch.tensor([0, 2])
    garbage = stroke5.clone()
    garbage[0, 5:] = torch.randn(4, 5) * 100        # rows after the first end token of sketch 0 (length 3)
    losses, grads = [], []
    for batch in (stroke5, garbage):
        model.zero_grad()
        out = sketch_loss(model, model(batch, labels), batch, lengths)
        out["loss"].backward()
        losses.append({k: v.item() for k, v in out.items()})
        grads.append([p.grad.clone() for p in model.parameters()])
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
    offset_mask, pen_mask = masks(lengths, 8)
    assert offset_mask.sum(1).tolist() == [3, 6] and pen_mask.sum(1).tolist() == [4, 7]  # + the first end token
    assert losses[0]["pen_steps"] == 11


def test_attention_weights_are_a_softmax_over_the_memory():
    attention = AdditiveAttention(4, 6, 5)
    context, weights = attention(torch.randn(2, 3, 4), memory := torch.randn(2, 7, 6))
    assert context.shape == (2, 3, 6) and weights.shape == (2, 3, 7)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3))
    torch.testing.assert_close(context, weights @ memory)


@pytest.mark.parametrize("head", ["seed", "gmm"])
def test_generation_shapes_and_end_tokens(head):
    torch.manual_seed(0)
    model = SketchGenerator(SketchConfig(head=head, **TINY)).eval()
    labels = torch.tensor([0, 1, 2, 2])
    rows = model.generate(labels, temperature=0.7, generator=torch.Generator().manual_seed(1))
    assert rows.shape[0] == 4 and 1 <= rows.shape[1] <= 12 and rows.shape[2] == 5
    assert (rows[..., 2:].sum(-1) == 1).all()                             # one pen state per row
    for sketch in rows:
        ends = torch.nonzero(sketch[:, 4]).flatten()
        if len(ends):                                                     # after the end: end tokens only
            assert (sketch[ends[0] + 1:] == torch.tensor([0, 0, 0, 0, 1.0])).all()
    again = model.generate(labels, temperature=0.7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(rows, again)                                # seeded sampling


def test_segments_skip_pen_lifts_and_the_live_animation_runs_headless():
    stroke3 = np.array([[1, 0, 0], [0, 1, 1], [5, 5, 0], [1, 0, 1]], float)
    segs = segments(stroke3)
    assert segs.shape == (4, 2, 2) and np.isnan(segs[2]).all() and np.isfinite(segs[[0, 1, 3]]).all()
    np.testing.assert_allclose(segs[3], [[6, 6], [7, 6]])
    rows = [np.eye(5, dtype=np.float32)[[2, 2]] + np.array([1, 0, 0, 0, 0], np.float32) for _ in range(3)]
    collected = animate_live(iter(rows), ["a", "b"], ncols=2, pause=1e-3)  # Agg: no window, returns
    assert len(collected) == 3 and collected[0].shape == (2, 5)


def test_gif_shows_the_strokes_being_drawn(tmp_path):
    from PIL import Image

    square = np.array([[10, 0, 0], [0, 10, 0], [-10, 0, 0], [0, -10, 1]], float)
    path = write_gif([square, square[:2]], ["a", "b"], tmp_path / "x.gif", ncols=2, title="t")
    with Image.open(path) as gif:
        assert gif.n_frames == 4                                           # one frame per row
        first = np.asarray(gif.convert("L")).copy()
        gif.seek(gif.n_frames - 1)
        last = np.asarray(gif.convert("L"))
    assert (last < 128).sum() > (first < 128).sum()                        # more ink as it draws


def test_the_pen_position_read_while_generating_is_the_one_teacher_forcing_reads():
    """With pen_position the decoder reads where the pen is (the sum of the offsets so far): generating step by
    step, feeding back the rows it wrote, gives the parameters teacher forcing gives on those rows."""
    torch.manual_seed(0)
    config = SketchConfig(head="gmm", pen_position=True, pen_turning=True, scale=40.0, **TINY)
    model = SketchGenerator(config).eval()
    labels = torch.tensor([0, 2])
    rows = model.generate(labels, temperature=0.7, generator=torch.Generator().manual_seed(3), max_len=6)
    stroke5 = torch.cat([torch.tensor([0, 0, 1.0, 0, 0]).expand(2, 1, 5), rows], dim=1)
    memory, state, classes = model.encode(labels)
    position, stepped = torch.zeros(2, 1, 2), []
    for t in range(rows.shape[1]):
        turns = turning(stroke5[:, :t + 1])[:, -1:]
        params, state = model.decode(stroke5[:, t:t + 1], classes, memory, state, position, turns)
        stepped.append(params["mu"])
        position = position + stroke5[:, t + 1:t + 2, :2]
    torch.testing.assert_close(torch.cat(stepped, 1), model(stroke5, labels)["mu"])
    seen, decode = [], model.decode        # and generate() itself kept the same pen state as it went
    model.decode = lambda *a: (seen.append((a[4], a[5])), decode(*a))[1]
    again = model.generate(labels, temperature=0.7, generator=torch.Generator().manual_seed(3), max_len=6)
    torch.testing.assert_close(again, rows)
    torch.testing.assert_close(torch.cat([p for p, _ in seen], 1), stroke5[:, :-1, :2].cumsum(1))
    torch.testing.assert_close(torch.cat([t for _, t in seen], 1), turning(stroke5[:, :-1]))
    assert "pen position" in config.describe() and model.decoder.input_size == 5 + 2 + 1 + TINY["embed_dim"]


def test_turning_counts_full_turns_either_way_and_skips_the_move_with_the_pen_up():
    offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [-0.1, 0.3], [-1, 0], [0, -1.0]])   # start token, ...
    pens = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 0], [1, 0, 0.0]])  # lift after row 2
    expected = torch.tensor([0, 0, 0.25, 0.25, 0.5, 0.75])     # row 3 moves to the next stroke: not a turn
    torch.testing.assert_close(turning(torch.cat([offsets, pens], 1)[None])[0], expected)
    mirrored = torch.cat([offsets * torch.tensor([1, -1.0]), pens], 1)
    torch.testing.assert_close(turning(mirrored[None])[0], -expected)


def test_a_config_written_before_the_pen_state_inputs_rebuilds_without_them():
    saved = SketchConfig(head="gmm", **TINY).to_dict()
    del saved["pen_position"], saved["pen_turning"]
    config = SketchConfig.from_dict(saved)
    assert not config.pen_position and not config.pen_turning
    assert SketchGenerator(config).decoder.input_size == 5 + TINY["embed_dim"]
