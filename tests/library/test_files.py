"""The library on disk: scan() in step with the folders, the prefix hasher, a second
name for a file (hard link, else a copy)."""

from __future__ import annotations

import errno
import hashlib
import os

import pytest

from library import files
from library.files import PrefixHasher, place_copy, scan
from library.models import ModelFile

pytestmark = pytest.mark.django_db


def put(models_dir, folder: str, name: str, data: bytes):
    path = models_dir / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_scan_records_new_files_with_their_hash_and_forgets_gone_ones(models_dir):
    put(models_dir, "checkpoints", "a.safetensors", b"aaa")
    put(models_dir, "loras", "b.safetensors", b"bb")
    put(models_dir, "loras", "c.safetensors.part", b"unfinished")
    put(models_dir, "loras", ".hidden", b"h")
    put(models_dir, "loras", "sub/d.safetensors", b"nested")
    put(models_dir, "not_a_folder", "e.safetensors", b"e")
    gone = ModelFile.objects.create(folder="vae", filename="gone.safetensors", size=1)

    result = scan()

    assert sorted(str(m) for m in result.added) == [
        "checkpoints/a.safetensors",
        "loras/b.safetensors",
    ]
    assert result.removed == 1
    assert not ModelFile.objects.filter(pk=gone.pk).exists()
    a = ModelFile.objects.get(folder="checkpoints", filename="a.safetensors")
    assert (a.size, a.sha256) == (3, hashlib.sha256(b"aaa").hexdigest())
    assert scan().added == []  # nothing new the second time


def test_scan_without_hashing_leaves_the_hash_for_later(models_dir):
    put(models_dir, "vae", "v.safetensors", b"v")
    (model_file,) = scan(hash_new=False).added
    assert model_file.sha256 == ""


def test_the_prefix_hasher_in_pieces_equals_the_whole_files_hash(tmp_path):
    data = os.urandom(3 * files.BLOCK + 12345)
    path = tmp_path / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = PrefixHasher(fd)
        for upto in (0, 10, files.BLOCK + 1, 2 * files.BLOCK, 2 * files.BLOCK):
            assert hasher.advance(upto) == upto
        assert hasher.advance(None) == len(data)
    finally:
        os.close(fd)
    assert hasher.hexdigest() == hashlib.sha256(data).hexdigest() == files.sha256_of(path)


def test_a_second_name_is_a_hard_link_or_else_a_copy(tmp_path, monkeypatch):
    source = tmp_path / "a"
    source.write_bytes(b"model")
    place_copy(source, tmp_path / "dir" / "b")
    assert os.stat(tmp_path / "dir" / "b").st_ino == os.stat(source).st_ino

    def no_links(*args):
        raise OSError(errno.EXDEV, "cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    place_copy(source, tmp_path / "c")
    assert (tmp_path / "c").read_bytes() == b"model"
    assert os.stat(tmp_path / "c").st_ino != os.stat(source).st_ino
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a", "c", "dir"]  # no temporary left
    with pytest.raises(FileExistsError):
        place_copy(source, tmp_path / "c")
