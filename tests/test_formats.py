"""The real on-disk formats: IDX (MNIST, Fashion-MNIST) and CIFAR's python pickles."""
import gzip

import numpy as np
import pytest

from common.errors import UserError
from common.formats import read_cifar_batch, read_cifar_meta, read_idx, write_cifar_batch, write_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip(tmp_path, dtype):
    array = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    write_idx(tmp_path / "a-idx3-ubyte", array)
    back = read_idx(tmp_path / "a-idx3-ubyte")
    assert back.dtype == np.dtype(dtype) and back.shape == (2, 3, 4)
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_the_documented_big_endian_layout(tmp_path):
    write_idx(tmp_path / "labels", np.array([7, 2, 1], np.uint8))
    assert (tmp_path / "labels").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1])


def test_idx_reads_gzip(tmp_path):
    write_idx(tmp_path / "x", np.arange(6, dtype=np.uint8).reshape(2, 3))
    (tmp_path / "x.gz").write_bytes(gzip.compress((tmp_path / "x").read_bytes()))
    np.testing.assert_array_equal(read_idx(tmp_path / "x.gz"), np.arange(6).reshape(2, 3))


@pytest.mark.parametrize("damage,message", [
    (lambda raw: raw[:-5], "expected 24 data bytes"),
    (lambda raw: b"\x01" + raw[1:], "bad magic"),
    (lambda raw: raw[:6], "truncated header"),
    (lambda raw: raw + b"\x00", "found 25"),
])
def test_corrupt_idx_is_a_clear_user_error(tmp_path, damage, message):
    path = tmp_path / "bad"
    write_idx(path, np.zeros((2, 3, 4), np.uint8))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(UserError, match=message) as err:
        read_idx(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_cifar_batch_round_trip_keeps_channel_order(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    write_cifar_batch(tmp_path / "data_batch_1", images, [0, 1, 2, 3, 4])
    back, labels = read_cifar_batch(tmp_path / "data_batch_1")
    np.testing.assert_array_equal(back, images)
    np.testing.assert_array_equal(labels, [0, 1, 2, 3, 4])


def test_cifar_corrupt_and_missing_are_user_errors(tmp_path):
    (tmp_path / "data_batch_1").write_bytes(b"not a pickle at all")
    with pytest.raises(UserError, match="corrupt CIFAR file"):
        read_cifar_batch(tmp_path / "data_batch_1")
    with pytest.raises(UserError, match="missing file"):
        read_cifar_meta(tmp_path / "batches.meta")


def test_whole_and_real_numbers_read_from_files_exclude_bools():
    """One check (common.formats) for what a checkpoint's epoch, a config's layer count or a sweep's bound must be:
    True is an int to Python and was a '1' wherever a check forgot it."""
    import numpy as np

    from common.formats import is_real, is_whole

    for value, whole, real in ((3, True, True), (np.int64(3), True, True), (0, True, True), (3.0, False, True),
                               (np.float32(0.5), False, True), (float("nan"), False, True), (True, False, False),
                               (np.bool_(True), False, False), ("3", False, False), (None, False, False),
                               ([3], False, False), (1 + 2j, False, False)):
        assert (is_whole(value), is_real(value)) == (whole, real), value
