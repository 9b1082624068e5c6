"""Data resolution: real loaders on files in the real layout, the offline fallback and its notice,
--data real without the files, and the stand-ins' shapes and learnability."""
import numpy as np
import pytest

from common import datasets
from common.datasets import REAL_SETS, load_image_dataset
from common.download import reachable
from common.errors import UserError
from common.formats import write_cifar_batch, write_idx
from tests.conftest import write_mnist_layout


@pytest.fixture
def offline(monkeypatch):
    """Point every download at a closed local port: the real code path, without the network."""
    for key, spec in REAL_SETS.items():
        monkeypatch.setitem(REAL_SETS, key, spec.__class__(**{**spec.__dict__, "urls": ("http://127.0.0.1:9/",)}))


def test_reachable_is_false_for_a_closed_port_and_fast():
    assert reachable("http://127.0.0.1:9/", timeout=2) is False


def test_mnist_reads_idx_files_in_torchvision_layout(tmp_path):
    write_mnist_layout(tmp_path)
    data = load_image_dataset("mnist", "real", tmp_path)
    assert data.x_train.shape == (120, 28, 28) and data.x_test.shape == (40, 28, 28)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    assert data.source.startswith("real: MNIST (120 train / 40 test)")
    assert data.classes == [str(d) for d in range(10)]


def test_label_out_of_range_is_rejected(tmp_path):
    raw = write_mnist_layout(tmp_path)
    write_idx(raw / "train-labels-idx1-ubyte", np.full(120, 12, np.uint8))
    with pytest.raises(UserError, match="label out of range"):
        load_image_dataset("mnist", "real", tmp_path)


def test_images_and_labels_of_different_length_are_rejected(tmp_path):
    raw = write_mnist_layout(tmp_path)
    write_idx(raw / "t10k-labels-idx1-ubyte", np.zeros(39, np.uint8))
    with pytest.raises(UserError, match="do not match 39 labels"):
        load_image_dataset("mnist", "real", tmp_path)


def test_cifar10_reads_the_batches_present(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("data_batch_1", 6), ("data_batch_2", 4), ("test_batch", 3)):
        write_cifar_batch(folder / name, rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), np.arange(n) % 10)
    import pickle
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in datasets.CIFAR10_NAMES]}))
    data = load_image_dataset("cifar10", "real", tmp_path)
    assert data.x_train.shape == (10, 32, 32, 3) and len(data.y_test) == 3
    assert data.classes == datasets.CIFAR10_NAMES


def test_auto_falls_back_offline_with_one_notice(tmp_path, offline):
    notices = []
    data = load_image_dataset("mnist", "auto", tmp_path / "nothing", announce=notices.append)
    assert len(notices) == 1 and "unavailable" in notices[0] and "stand-in" in notices[0]
    assert data.source.startswith("embedded: scikit-learn digits")
    assert not (tmp_path / "nothing").exists()                        # no download started, nothing created


def test_real_without_files_is_a_clear_error(tmp_path, offline):
    with pytest.raises(UserError, match="MNIST not found under .*MNIST/raw .*put the files there"):
        load_image_dataset("mnist", "real", tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()


@pytest.mark.slow
def test_generated_never_touches_the_network(tmp_path, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("network used")
    monkeypatch.setattr(datasets, "fetch", forbidden)
    for name in REAL_SETS:
        data = load_image_dataset(name, "generated", tmp_path, smoke=True)
        assert data.source.startswith(("generated", "embedded"))


@pytest.mark.parametrize("name,shape,classes", [("mnist", (28, 28), 10), ("fashion_mnist", (28, 28), 10),
                                                 pytest.param("cifar10", (32, 32, 3), 10, marks=pytest.mark.slow),
                                                 pytest.param("cifar100", (32, 32, 3), 100, marks=pytest.mark.slow)])
def test_stand_ins_have_real_shapes_and_are_deterministic(name, shape, classes):
    a = REAL_SETS[name].stand_in(3)
    b = REAL_SETS[name].stand_in(3)
    assert a.x_train.shape[1:] == shape and a.x_train.dtype == np.uint8
    assert len(a.classes) == classes and set(np.unique(a.y_train)) == set(range(classes))
    np.testing.assert_array_equal(a.x_train, b.x_train)


@pytest.mark.parametrize("name", ["mnist", "fashion_mnist", "cifar10"])
def test_stand_ins_are_learnable(name):
    """A nearest-centroid classifier beats chance clearly on every stand-in."""
    data = REAL_SETS[name].stand_in(0)
    x_train = data.x_train.reshape(len(data.x_train), -1).astype(float)
    x_test = data.x_test.reshape(len(data.x_test), -1).astype(float)
    centroids = np.stack([x_train[data.y_train == k].mean(0) for k in range(len(data.classes))])
    predictions = ((x_test[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    assert (predictions == data.y_test).mean() > 3 / len(data.classes)
