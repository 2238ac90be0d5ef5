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
