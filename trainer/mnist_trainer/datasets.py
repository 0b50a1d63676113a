"""The two MNIST-style datasets: their files, checksums, mirrors and class names; loading and splitting."""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .errors import DataFileError
from .idx import read_idx

log = logging.getLogger(__name__)

TRAIN_IMAGES = "train-images-idx3-ubyte.gz"
TRAIN_LABELS = "train-labels-idx1-ubyte.gz"
TEST_IMAGES = "t10k-images-idx3-ubyte.gz"
TEST_LABELS = "t10k-labels-idx1-ubyte.gz"
FILE_NAMES = (TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS)

# Debian ships Fashion-MNIST (the same four file names, other gzip headers) in this package and directory.
DEBIAN_PACKAGE = "dataset-fashion-mnist"
DEBIAN_DIR = "/usr/share/datasets/fashion-mnist"

# The tutorials hold out 5,000 of the 60,000 training images for validation: 1/12 of the training set.
VALIDATION_FRACTION = 1 / 12


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    class_names: tuple[str, ...]
    md5: dict[str, str]  # file name -> published md5 of the .gz file
    mirrors: tuple[str, ...]  # base URLs, tried in order
    # file name -> md5 of the decompressed IDX bytes: a file re-gzipped with other headers (as Debian's package
    # is) holds the same data under another .gz md5.
    idx_md5: dict[str, str] = field(default_factory=dict)
    data_dir_env: str = ""  # environment variable naming the default data directory
    # How the server must turn a PNG/JPEG into this dataset's 28x28 image; written into metadata.json.
    image_preparation: str = ""
    package_hint: str = ""  # another way to get the files, for the error when they are missing offline


MNIST = DatasetSpec(
    name="mnist",
    class_names=tuple(str(d) for d in range(10)),
    md5={
        TRAIN_IMAGES: "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        TRAIN_LABELS: "d53e105ee54ea40749a09fcbcd1e9432",
        TEST_IMAGES: "9fb629c4189551a2d022fa330f9573f3",
        TEST_LABELS: "ec29112dd5afa0611ce80d1b7f02629c",
    },
    mirrors=(
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    idx_md5={
        TRAIN_IMAGES: "6bbc9ace898e44ae57da46a324031adb",
        TRAIN_LABELS: "a25bea736e30d166cdddb491f175f624",
        TEST_IMAGES: "2646ac647ad5339dbf082846283269ea",
        TEST_LABELS: "27ae3e4e09519cfbb04c329615203637",
    },
    data_dir_env="MNIST_DATA_DIR",
    image_preparation="mnist-digit",
)

FASHION_MNIST = DatasetSpec(
    name="fashion-mnist",
    class_names=(
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
    ),
    md5={
        TRAIN_IMAGES: "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        TRAIN_LABELS: "25c81989df183df01b3e8a0aad5dffbe",
        TEST_IMAGES: "bef4ecab320f06d8554ea6380940ec79",
        TEST_LABELS: "bb300cfdad3c16e7a12a480ee83cd310",
    },
    mirrors=(
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
    idx_md5={
        TRAIN_IMAGES: "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        TRAIN_LABELS: "9018921c3c673c538a1fc5bad174d6f9",
        TEST_IMAGES: "8181f5470baa50b63fa0f6fddb340f0a",
        TEST_LABELS: "15d484375f8d13e6eb1aabb0c3f46965",
    },
    data_dir_env="FASHION_MNIST_DATA_DIR",
    image_preparation="fashion-mnist-product",
    package_hint=f"or install Debian's package {DEBIAN_PACKAGE} (apt-get install {DEBIAN_PACKAGE}) and pass "
    f"--data-dir {DEBIAN_DIR}",
)

DATASETS = {spec.name: spec for spec in (MNIST, FASHION_MNIST)}


@dataclass(frozen=True)
class Split:
    images: np.ndarray  # uint8 [N, 28, 28]
    labels: np.ndarray  # uint8 [N]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class Splits:
    train: Split
    validation: Split
    test: Split


def default_data_dir(dataset: str) -> Path:
    """$MNIST_DATA_DIR for MNIST, $FASHION_MNIST_DATA_DIR for Fashion-MNIST, else the per-user cache directory.

    Each dataset has its own variable: the files have the same names, so digits read from the other one's
    directory would be trained under clothing labels without any error.
    """
    value = os.environ.get(DATASETS[dataset].data_dir_env)
    if value:
        return Path(value)
    return Path.home() / ".cache" / "mnist-serving" / dataset


def file_md5(path: Path, decompress: bool = False) -> str:
    """md5 of the file's bytes, or with `decompress` of the bytes its gzip stream holds."""
    digest = hashlib.md5(usedforsecurity=False)
    with (gzip.open if decompress else open)(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_genuine(path: Path, name: str, spec: DatasetSpec) -> bool:
    """The published .gz file, or the same IDX bytes under other gzip headers (Debian's package)."""
    if file_md5(path) == spec.md5[name]:
        return True
    if name not in spec.idx_md5:
        return False
    try:
        return file_md5(path, decompress=True) == spec.idx_md5[name]
    except (OSError, EOFError, zlib.error):  # not gzip, or a truncated or corrupt stream
        return False


def _load_pair(directory: Path, images_name: str, labels_name: str, n_classes: int) -> Split:
    images_path, labels_path = directory / images_name, directory / labels_name
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[1:] != (28, 28):
        raise DataFileError(images_path, f"holds images of {images.shape[1]}x{images.shape[2]} pixels, expected 28x28")
    if len(images) != len(labels):
        raise DataFileError(labels_path, f"has {len(labels)} labels but {images_name} has {len(images)} images")
    if len(labels) and labels.max() >= n_classes:
        raise DataFileError(labels_path, f"has label {labels.max()}, expected 0..{n_classes - 1}")
    return Split(images, labels)


def load_splits(directory: Path, spec: DatasetSpec) -> Splits:
    """Train / validation / test: the last 1/12 of the training file is validation (55,000 / 5,000 on MNIST)."""
    n_classes = len(spec.class_names)
    train = _load_pair(directory, TRAIN_IMAGES, TRAIN_LABELS, n_classes)
    test = _load_pair(directory, TEST_IMAGES, TEST_LABELS, n_classes)
    n_validation = round(len(train) * VALIDATION_FRACTION)
    if len(train) - n_validation < 1 or n_validation < 1 or len(test) < 1:
        raise DataFileError(directory / TRAIN_IMAGES, f"too few images to split ({len(train)} train, {len(test)} test)")
    cut = len(train) - n_validation
    return Splits(
        train=Split(train.images[:cut], train.labels[:cut]),
        validation=Split(train.images[cut:], train.labels[cut:]),
        test=test,
    )
