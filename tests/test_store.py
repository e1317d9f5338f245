import numpy as np
import pytest

from pipeline import store


def test_atomic_path_leaves_nothing_when_the_writer_fails(tmp_path):
    target = tmp_path / "a.json"
    with pytest.raises(RuntimeError):
        with store.atomic_path(target) as temp:
            temp.write_text("half")
            raise RuntimeError("crash")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_replaces_the_old_file_only_at_the_end(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with store.atomic_path(target) as temp:
        temp.write_text("new")
        assert target.read_text() == "old"
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


@pytest.mark.parametrize("sizes", [[], [0], [5], [3, 0, 1000, 7]])
def test_npy_appender_streams_a_loadable_array(tmp_path, sizes):
    rng = np.random.default_rng(1)
    parts = [rng.integers(-5, 5, size=n).astype(np.int32) for n in sizes]
    writer = store.NpyAppender(tmp_path / "a.npy", np.int32)
    for part in parts:
        writer.append(part)
    writer.close()
    loaded = np.load(tmp_path / "a.npy", allow_pickle=False)
    expected = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    assert loaded.dtype == np.int32 and np.array_equal(loaded, expected)
    assert np.array_equal(np.load(tmp_path / "a.npy", mmap_mode="r"), expected)


def test_file_problems_detect_changed_and_missing_files(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"abc")
    (tmp_path / "b.bin").write_bytes(b"xyz")
    files = store.describe_files(tmp_path)
    assert store.file_problems(tmp_path, files) == []
    (tmp_path / "a.bin").write_bytes(b"abd")          # same size, new content and mtime
    (tmp_path / "b.bin").unlink()
    assert store.file_problems(tmp_path, files) == ["a.bin changed content", "b.bin is missing"]


def test_remove_temporaries(tmp_path):
    (tmp_path / ".x.npy.tmp-123").write_bytes(b"")
    (tmp_path / "keep.npy").write_bytes(b"")
    store.remove_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.npy"]
