"""Fashion-MNIST's own parts of the trainer: its recipe and flip augmentation, accepting Debian's re-gzipped
files (synthetic ones and the installed package), the offline error naming the Debian package, its data-dir
variable and image preparation name."""

from __future__ import annotations

import gzip
import socket
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from mnist_trainer.datasets import (
    DEBIAN_DIR,
    DEBIAN_PACKAGE,
    FASHION_MNIST,
    FILE_NAMES,
    MNIST,
    TEST_LABELS,
    TRAIN_IMAGES,
    Split,
    default_data_dir,
    file_md5,
    is_genuine,
    load_splits,
)
from mnist_trainer.download import ensure_files
from mnist_trainer.errors import DataMissingError
from mnist_trainer.recipes import resolve_recipe
from mnist_trainer.training import _epochs, flip_images
from tests.support.synthetic import write_synthetic_mnist


def _regzip(source: Path, target: Path) -> Path:
    """The same bytes under other gzip headers (no file name, time 0), as Debian's package stores them."""
    with gzip.open(source, "rb") as f:
        data = f.read()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        out.write(data)
    return target


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """Small IDX files and a spec whose published digests are theirs (.gz and decompressed)."""
    directory = write_synthetic_mnist(tmp_path_factory.mktemp("synthetic"), n_train=120, n_test=24)
    spec = replace(
        FASHION_MNIST,
        md5={n: file_md5(directory / n) for n in FILE_NAMES},
        idx_md5={n: file_md5(directory / n, decompress=True) for n in FILE_NAMES},
    )
    return directory, spec


def test_flip_mirrors_about_half_the_images_and_leaves_the_input_alone():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (400, 28, 28), dtype=np.uint8)
    before = images.copy()
    flipped = flip_images(images, rng)
    np.testing.assert_array_equal(images, before)
    mirrored = np.all(flipped == images[:, :, ::-1], axis=(1, 2))
    unchanged = np.all(flipped == images, axis=(1, 2))
    assert np.all(mirrored ^ unchanged)  # each image either mirrored left-right or as it was
    assert 150 < mirrored.sum() < 250


def test_only_the_fashion_recipe_flips():
    fashion, mnist = resolve_recipe("default", "cnn", "fashion-mnist"), resolve_recipe("default", "cnn", "mnist")
    assert fashion.flip and fashion.shift_pixels == 1
    # MNIST's default is as it was: a mirrored digit is not the same digit.
    assert (mnist.optimizer, mnist.learning_rate, mnist.batch_size, mnist.epochs, mnist.shift_pixels) == (
        "adam",
        3e-3,
        128,
        10,
        2,
    )
    assert not mnist.flip and mnist.label_smoothing == 0
    assert resolve_recipe("default", "cnn") == mnist
    for dataset in ("mnist", "fashion-mnist"):  # the tutorial is the tutorial on either dataset
        assert not resolve_recipe("tutorial", "cnn", dataset).flip


@pytest.mark.parametrize("dataset, expect_flips", [("fashion-mnist", True), ("mnist", False)])
def test_training_batches_are_flipped_for_fashion_only(dataset, expect_flips):
    rng = np.random.default_rng(1)
    # Asymmetric images with their index in the labels, so each batch image can be matched to its source.
    images = rng.integers(0, 256, (256, 28, 28), dtype=np.uint8)
    split = Split(images, np.arange(256, dtype=np.uint8))
    recipe = replace(resolve_recipe("default", "cnn", dataset), shift_pixels=0)
    batches = next(_epochs(split, 64, recipe, np.random.default_rng(2)))
    flips = sum(
        int(np.array_equal(image, images[label][:, ::-1]))
        for batch, labels in batches
        for image, label in zip(batch, labels)
    )
    same = sum(
        int(np.array_equal(image, images[label])) for batch, labels in batches for image, label in zip(batch, labels)
    )
    assert flips + same == 256
    assert (flips > 64) if expect_flips else (flips == 0)


def test_debian_gzip_headers_are_accepted_and_other_data_is_not(tmp_path, synthetic):
    source, spec = synthetic
    debian = _regzip(source / TRAIN_IMAGES, tmp_path / "debian" / TRAIN_IMAGES)
    assert file_md5(debian) != spec.md5[TRAIN_IMAGES]  # other .gz bytes ...
    assert is_genuine(debian, TRAIN_IMAGES, spec)  # ... same IDX content
    assert is_genuine(source / TRAIN_IMAGES, TRAIN_IMAGES, spec)
    data = bytearray(gzip.decompress(debian.read_bytes()))
    data[-1] ^= 0xFF
    (tmp_path / "changed.gz").write_bytes(gzip.compress(bytes(data)))
    assert not is_genuine(tmp_path / "changed.gz", TRAIN_IMAGES, spec)
    (tmp_path / "truncated.gz").write_bytes(debian.read_bytes()[:-100])
    assert not is_genuine(tmp_path / "truncated.gz", TRAIN_IMAGES, spec)
    (tmp_path / "plain").write_bytes(bytes(data))
    assert not is_genuine(tmp_path / "plain", TRAIN_IMAGES, spec)


def test_a_mirror_with_debian_files_passes_the_md5_check(tmp_path, synthetic):
    source, spec = synthetic
    for name in FILE_NAMES:
        _regzip(source / name, tmp_path / "mirror" / name)
    ensure_files(tmp_path / "data", spec, ((tmp_path / "mirror").as_uri() + "/",))
    for name in FILE_NAMES:
        assert (tmp_path / "data" / name).read_bytes() == (tmp_path / "mirror" / name).read_bytes()


def test_genuine_fashion_mnist_in_either_gzip_form(tmp_path, fashion_mnist_dir):
    assert is_genuine(fashion_mnist_dir / TEST_LABELS, TEST_LABELS, FASHION_MNIST)
    debian = _regzip(fashion_mnist_dir / TEST_LABELS, tmp_path / TEST_LABELS)
    assert is_genuine(debian, TEST_LABELS, FASHION_MNIST)
    assert not is_genuine(debian, TEST_LABELS, MNIST)


def test_a_debian_layout_directory_is_used_as_it_is(tmp_path, synthetic):
    source, spec = synthetic
    debian = tmp_path / "usr" / "share" / "datasets" / "fashion-mnist"
    for name in FILE_NAMES:
        _regzip(source / name, debian / name)
    debian.chmod(0o555)  # installed by a package: read-only for the user
    try:
        ensure_files(debian, spec, ("http://127.0.0.1:1/never-asked/",))
    finally:
        debian.chmod(0o755)


def test_debians_installed_package_is_read_as_it_is():
    """The real dataset-fashion-mnist package (scripts/install-system-deps.sh installs it), not a copy."""
    debian = Path(DEBIAN_DIR)
    assert debian.is_dir(), f"{DEBIAN_PACKAGE} is not installed: make system-deps installs it"
    ensure_files(debian, FASHION_MNIST, ("http://127.0.0.1:1/never-asked/",))  # nothing missing, nothing fetched
    for name in FILE_NAMES:
        assert file_md5(debian / name) != FASHION_MNIST.md5[name]  # Debian's own gzip headers ...
        assert is_genuine(debian / name, name, FASHION_MNIST)  # ... around the genuine IDX bytes
    splits = load_splits(debian, FASHION_MNIST)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (55_000, 5_000, 10_000)
    assert set(np.unique(splits.test.labels)) == set(range(10))


def test_offline_error_names_the_debian_package_beside_the_mirrors(tmp_path):
    with socket.socket() as s:  # a port nothing listens on: refused, like a machine without internet
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}/fashion/"
    with pytest.raises(DataMissingError) as info:
        ensure_files(tmp_path / "data", FASHION_MNIST, (url,))
    message = str(info.value)
    assert message.startswith(f"{TRAIN_IMAGES} is missing: put the file at {tmp_path / 'data' / TRAIN_IMAGES}")
    assert f"apt-get install {DEBIAN_PACKAGE}" in message and f"--data-dir {DEBIAN_DIR}" in message
    assert f"{url}{TRAIN_IMAGES}: [Errno 111] Connection refused" in message
    assert DEBIAN_PACKAGE == "dataset-fashion-mnist" and DEBIAN_DIR == "/usr/share/datasets/fashion-mnist"


def test_mnist_offline_error_has_no_debian_hint(tmp_path):
    with pytest.raises(DataMissingError) as info:
        ensure_files(tmp_path / "data", MNIST, ((tmp_path / "nowhere").as_uri() + "/",))
    assert DEBIAN_PACKAGE not in str(info.value)


def test_each_dataset_has_its_own_data_dir_variable(monkeypatch, tmp_path):
    monkeypatch.setenv("MNIST_DATA_DIR", str(tmp_path / "digits"))
    monkeypatch.setenv("FASHION_MNIST_DATA_DIR", str(tmp_path / "clothes"))
    assert default_data_dir("mnist") == tmp_path / "digits"
    assert default_data_dir("fashion-mnist") == tmp_path / "clothes"
    monkeypatch.delenv("FASHION_MNIST_DATA_DIR")
    assert default_data_dir("fashion-mnist") == Path.home() / ".cache" / "mnist-serving" / "fashion-mnist"


def test_image_preparation_names():
    # The server picks its PNG/JPEG preparation by these exact strings from metadata.json.
    assert MNIST.image_preparation == "mnist-digit"
    assert FASHION_MNIST.image_preparation == "fashion-mnist-product"
    assert FASHION_MNIST.class_names == (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    )
