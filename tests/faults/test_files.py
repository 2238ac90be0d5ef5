"""Files are written whole or not at all: a write that fails midway leaves the old file
under the real name and no temporary file behind."""

import pytest

from plato.files import write_file


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    path = write_file(tmp_path / "sub" / "report.html", "old")
    assert path.read_text() == "old" and sorted(p.name for p in path.parent.iterdir()) == [
        "report.html"]

    def killed(self, data):  # dies after writing half of it
        with open(self, "wb") as f:
            f.write(data[: len(data) // 2])
        raise KeyboardInterrupt

    monkeypatch.setattr(type(path), "write_bytes", killed)
    with pytest.raises(KeyboardInterrupt):
        write_file(path, "new contents")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["report.html"]
    write_file(path, b"new")
    assert path.read_bytes() == b"new"


def test_safetensors_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    """Every safetensors file (checkpoints, dataset caches, a sweep's stitches and pictures,
    SLURM inputs and results) goes through the same temporary file and rename."""
    import safetensors.torch
    import torch
    from safetensors.torch import load_file

    from plato.files import write_safetensors

    path = write_safetensors(tmp_path / "stitch.safetensors", {"w": torch.ones(2, 3).T},
                             {"key": "old"})  # a transposed (non-contiguous) tensor
    assert torch.equal(load_file(path)["w"], torch.ones(3, 2))

    def killed(tensors, filename, metadata=None):  # dies after writing part of the file
        with open(filename, "wb") as f:
            f.write(b"\x10\x00")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        write_safetensors(path, {"w": torch.zeros(1)})
    monkeypatch.undo()
    assert torch.equal(load_file(path)["w"], torch.ones(3, 2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stitch.safetensors"]


def test_a_folder_that_cannot_be_written_is_found_before_the_work(tmp_path):
    from plato.files import check_writable

    assert check_writable(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert list((tmp_path / "a" / "b").iterdir()) == []  # the probe leaves nothing
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OSError):
        check_writable(blocker / "sub")  # a file where a folder should be
