"""Downloading missing dataset files: a real HTTP server on 127.0.0.1 plays the public mirrors."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import socket
import subprocess
import sys
import threading
from dataclasses import replace

import pytest

from mnist_trainer.datasets import FILE_NAMES, MNIST, TRAIN_IMAGES, file_md5
from mnist_trainer.download import MIRRORS_ENV, ensure_files
from mnist_trainer.errors import DataMissingError
from tests.support.synthetic import write_synthetic_mnist


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirror_root(tmp_path):
    """An HTTP server on a free loopback port serving tmp_path/www; yields (www, base_url)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(www))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def closed_port_url():
    """A loopback URL nothing listens on: connection refused, like a machine without internet."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/mnist/"


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory):
    directory = write_synthetic_mnist(tmp_path_factory.mktemp("synthetic-mirror"), n_train=120, n_test=24)
    return directory, replace(MNIST, md5={name: file_md5(directory / name) for name in FILE_NAMES})


def _serve(www, subdir, source, corrupt=()):
    folder = www / subdir
    folder.mkdir()
    for name in FILE_NAMES:
        data = (source / name).read_bytes()
        (folder / name).write_bytes(data[:-1] + b"X" if name in corrupt else data)


def test_downloads_every_missing_file_and_verifies_md5(tmp_path, mirror_root, synthetic_files):
    www, url = mirror_root
    source, spec = synthetic_files
    _serve(www, "good", source)
    data_dir = tmp_path / "data"
    ensure_files(data_dir, spec, (f"{url}/good/",))
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(FILE_NAMES)  # no partial files left
    for name in FILE_NAMES:
        assert (data_dir / name).read_bytes() == (source / name).read_bytes()


def test_falls_back_to_the_next_mirror(tmp_path, mirror_root, synthetic_files, closed_port_url, caplog):
    www, url = mirror_root
    source, spec = synthetic_files
    _serve(www, "tampered", source, corrupt={TRAIN_IMAGES})
    _serve(www, "good", source)
    data_dir = tmp_path / "data"
    mirrors = (closed_port_url, f"{url}/missing/", f"{url}/tampered/", f"{url}/good/")
    ensure_files(data_dir, spec, mirrors)
    assert file_md5(data_dir / TRAIN_IMAGES) == spec.md5[TRAIN_IMAGES]
    warnings = "\n".join(r.getMessage() for r in caplog.records)
    assert "Connection refused" in warnings and "HTTP 404" in warnings
    assert f"{url}/tampered/{TRAIN_IMAGES}: md5 " in warnings


def test_files_already_present_are_not_downloaded(tmp_path, synthetic_files, closed_port_url):
    source, spec = synthetic_files
    data_dir = shutil.copytree(source, tmp_path / "data")
    ensure_files(data_dir, spec, (closed_port_url,))  # would fail if it tried the network


def test_every_mirror_failing_names_the_file_and_where_to_put_it(tmp_path, mirror_root, synthetic_files):
    www, url = mirror_root
    source, spec = synthetic_files
    _serve(www, "tampered", source, corrupt=set(FILE_NAMES))
    data_dir = tmp_path / "data"
    with pytest.raises(DataMissingError) as info:
        ensure_files(data_dir, spec, (f"{url}/tampered/",))
    message = str(info.value)
    assert message.startswith(
        f"{TRAIN_IMAGES} is missing: put the file at {data_dir / TRAIN_IMAGES} (md5 {spec.md5[TRAIN_IMAGES]})"
    )
    assert "md5" in message and "also missing: train-labels-idx1-ubyte.gz" in message
    assert list(data_dir.iterdir()) == []  # the rejected download is not kept


def test_cli_rejects_files_that_are_not_the_published_mnist(tmp_path, mirror_root, synthetic_files):
    www, url = mirror_root
    source, _ = synthetic_files
    _serve(www, "mnist", source)  # synthetic files: well-formed, but not the md5 MNIST publishes
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mnist_trainer",
            "--data-dir",
            tmp_path / "data",
            "--model-dir",
            tmp_path / "models",
            "--mirror",
            f"{url}/mnist/",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"mnist-trainer: error: {TRAIN_IMAGES} is missing: put the file at "
        f"{tmp_path / 'data' / TRAIN_IMAGES} (md5 {MNIST.md5[TRAIN_IMAGES]})"
    )
    assert f"expected {MNIST.md5[TRAIN_IMAGES]}" in last
    assert list((tmp_path / "models").iterdir()) == []


def test_cli_offline_error_and_mirror_list_from_environment(tmp_path, closed_port_url):
    env = {**os.environ, MIRRORS_ENV: closed_port_url}
    result = subprocess.run(
        [sys.executable, "-m", "mnist_trainer", "--data-dir", tmp_path / "data", "--model-dir", tmp_path / "models"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert f"put the file at {tmp_path / 'data' / TRAIN_IMAGES}" in last
    assert f"{closed_port_url}{TRAIN_IMAGES}: [Errno 111] Connection refused" in last


def test_genuine_mnist_passes_the_published_md5(tmp_path, mirror_root, mnist_dir):
    www, url = mirror_root
    _serve(www, "mnist", mnist_dir)
    ensure_files(tmp_path / "data", MNIST, (f"{url}/mnist/",))
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(FILE_NAMES)
