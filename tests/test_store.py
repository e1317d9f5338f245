import threading
import time

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


def test_background_writer_returns_at_once_and_runs_one_write_at_a_time():
    """run() returns while its write is still going; the next run() and wait() wait for it."""
    release, log = threading.Event(), []

    def slow_write(name):
        assert release.wait(timeout=10)
        log.append(name)

    writer = store.BackgroundWriter()
    writer.run(slow_write, "first")
    assert log == []                            # the caller went on before the write ended
    threading.Timer(0.05, release.set).start()
    writer.run(log.append, "second")            # waits until "first" is written
    assert log[0] == "first"
    writer.wait()
    assert log == ["first", "second"]


def test_background_writer_raises_a_failed_write_in_the_callers_thread(tmp_path):
    def failing_write():
        raise OSError("disk full")

    writer = store.BackgroundWriter()
    writer.run(failing_write)
    with pytest.raises(OSError, match="disk full"):
        writer.wait()
    writer.wait()                                # the error is raised once
    with pytest.raises(OSError, match="disk full"):
        with store.BackgroundWriter() as writer:
            writer.run(failing_write)
    # a write still going when the block ends by an exception is finished, not dropped
    with pytest.raises(KeyboardInterrupt):
        with store.BackgroundWriter() as writer:
            writer.run(lambda: (time.sleep(0.05), store.save_npz(tmp_path / "a.npz", x=np.ones(3))))
            raise KeyboardInterrupt
    assert store.load_npz(tmp_path / "a.npz")["x"].tolist() == [1.0, 1.0, 1.0]
