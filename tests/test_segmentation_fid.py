"""common.segmentation (ARI, FG-ARI) against scikit-learn, and common.fid against a direct Fréchet distance."""
import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from common.segmentation import adjusted_rand_index, foreground_ari, mean_scene_scores, segmentation_scores

HAND_MADE = [  # (true, pred) label maps of one 3x4 image each
    ([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),  # one segment each
    ([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], [[5, 5, 5, 5], [5, 5, 5, 5], [5, 5, 5, 5]]),  # one, other label
    ([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]], [[0, 1, 2, 3], [0, 1, 2, 3], [4, 4, 4, 4]]),  # one vs many
    ([[0, 1, 1, 2], [0, 1, 1, 2], [3, 3, 3, 3]], [[7, 7, 7, 7], [7, 7, 7, 7], [7, 7, 7, 7]]),  # many vs one
    ([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], [[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]),  # singletons vs one
    ([[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]], [[11, 10, 9, 8], [7, 6, 5, 4], [3, 2, 1, 0]]),  # singletons both
    ([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]], [[1, 1, 0, 0], [1, 1, 0, 0], [3, 3, 3, 3]]),  # relabelled: 1.0
    ([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]], [[0, 1, 0, 1], [0, 1, 0, 1], [0, 1, 0, 1]]),  # crossing
    ([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, 2, 2]], [[0, 0, 1, 1], [0, 0, 2, 2], [2, 2, 2, 3]]),  # nearly right
]


@pytest.mark.parametrize("true, pred", HAND_MADE)
def test_ari_equals_sklearn_on_hand_made_segmentations(true, pred):
    true_t, pred_t = torch.tensor([true]), torch.tensor([pred])
    expected = adjusted_rand_score(np.ravel(true), np.ravel(pred))
    assert adjusted_rand_index(true_t, pred_t).item() == pytest.approx(expected, abs=1e-12)


def test_ari_batched_equals_sklearn_per_image_on_random_segmentations():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, (16, 8, 8))
    pred = np.where(rng.random((16, 8, 8)) < 0.7, true, rng.integers(0, 7, (16, 8, 8)))
    pred[3] = 2                           # one predicted segment
    true[5] = 0                           # one true segment (all background)
    got = adjusted_rand_index(torch.tensor(true), torch.tensor(pred)).numpy()
    expected = [adjusted_rand_score(t.ravel(), p.ravel()) for t, p in zip(true, pred)]
    np.testing.assert_allclose(got, expected, atol=1e-12)


def test_fg_ari_is_ari_on_the_foreground_pixels_only():
    rng = np.random.default_rng(1)
    true = rng.integers(0, 4, (12, 6, 6))
    pred = np.where(rng.random((12, 6, 6)) < 0.6, true, rng.integers(0, 5, (12, 6, 6)))
    true[2] = np.where(true[2] > 0, 1, 0)  # a single foreground object
    true[4, :, :] = 0
    true[4, 0, 0] = 3                     # a single foreground pixel
    got = foreground_ari(torch.tensor(true), torch.tensor(pred)).numpy()
    expected = [adjusted_rand_score(t[t > 0], p[t > 0]) for t, p in zip(true, pred)]
    np.testing.assert_allclose(got, expected, atol=1e-12)
    both = segmentation_scores(torch.tensor(true), torch.tensor(pred))
    np.testing.assert_allclose(both["fg_ari"].numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("batch_size", [1, 3, 64])
def test_mean_scene_scores_are_sklearns_means_over_the_split_in_any_batching(batch_size):
    rng = np.random.default_rng(1)
    true = torch.from_numpy(rng.integers(0, 3, (7, 5, 5)))
    pred = torch.from_numpy(rng.integers(0, 4, (7, 5, 5)))
    loss = torch.from_numpy(rng.random(7))
    seen = []

    def score(batch, generator):
        seen.append(generator.initial_seed())
        return batch[0], batch[1], batch[2]

    means = mean_scene_scores(score, (loss, true, pred), seed=5, device="cpu", batch_size=batch_size)
    fg = true != 0
    expected_fg = np.mean([adjusted_rand_score(t[f], p[f]) for t, p, f in zip(true.numpy(), pred.numpy(), fg.numpy())])
    assert means["loss"] == pytest.approx(float(loss.mean()))
    assert means["ari"] == pytest.approx(np.mean([adjusted_rand_score(t.ravel(), p.ravel())
                                                  for t, p in zip(true.numpy(), pred.numpy())]))
    assert means["fg_ari"] == pytest.approx(expected_fg)
    assert len(seen) == -(-7 // batch_size) and set(seen) == {5}


def test_ari_rejects_maps_of_different_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        adjusted_rand_index(torch.zeros(2, 4, 4, dtype=torch.long), torch.zeros(2, 4, 5, dtype=torch.long))


def test_clean_fid_equals_the_frechet_distance_computed_directly():
    from common.fid import fid, frechet_distance

    rng = np.random.default_rng(2)
    a = rng.normal(size=(300, 24)) @ rng.normal(size=(24, 24))
    b = rng.normal(0.3, 1.2, size=(250, 24)) @ rng.normal(size=(24, 24))
    assert fid(a, b) == pytest.approx(frechet_distance(a, b), rel=1e-6)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)


def test_fid_inception_file_ships_in_the_wheel_and_needs_no_download():
    from common.fid import inception_path

    path = inception_path()
    assert path.name == "default_1.pt" and path.stat().st_size > 80_000_000


@pytest.mark.slow
def test_inception_features_and_fid_on_images_equal_the_direct_distance():
    from common.fid import FEATURES, fid, frechet_distance, inception_features

    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8, generator=gen)
    b = torch.rand(5, 3, 48, 48, generator=gen)
    fa, fb = inception_features(a, batch_size=4), inception_features(b)
    assert fa.shape == (6, FEATURES) and fb.shape == (5, FEATURES) and np.isfinite(fa).all()
    np.testing.assert_allclose(inception_features(a[:2]), fa[:2], rtol=1e-4, atol=1e-4)  # batch-independent
    assert fid(fa, fb) == pytest.approx(frechet_distance(fa, fb), rel=1e-3)
