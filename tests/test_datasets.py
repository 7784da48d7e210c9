"""The server-side dataset store, on a real directory: content ids, verification on read, bounds, owners."""

from __future__ import annotations

import shutil

import numpy as np

from engine import load_market, synthetic_market
from engine.datasets import DatasetStore, dataset_id, to_frame, valid_id


def test_a_dataset_round_trips_bit_for_bit_and_keeps_its_name_and_warnings(tmp_path, sample):
    store = DatasetStore(tmp_path)
    info = store.put(sample, owner="alice")
    assert info.id == dataset_id(sample) and valid_id(info.id) and info.symbols == 6
    again = DatasetStore(tmp_path).get(info.id)  # a fresh store: read from disk, not memory
    assert again.fingerprint == sample.fingerprint and again.name == sample.name
    assert again.warnings == sample.warnings
    for field in ("open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(getattr(again, field), getattr(sample, field))


def test_the_same_content_under_another_name_gets_the_same_id(tmp_path, sample):
    csv = tmp_path / "a.csv"
    to_frame(sample).to_csv(csv, index=False)
    copy = tmp_path / "renamed.csv"
    shutil.copy(csv, copy)
    assert dataset_id(load_market(csv)) == dataset_id(load_market(copy))


def test_a_damaged_or_swapped_file_is_never_trusted(tmp_path, sample):
    store = DatasetStore(tmp_path)
    a = store.put(sample, owner="alice")
    b = store.put(synthetic_market(5, 200, seed=3), owner="bob")
    shutil.copy(tmp_path / f"{b.id}.parquet", tmp_path / f"{a.id}.parquet")  # b's bars under a's id
    store._memo.clear()  # as when no session holds the dataset any more: the next read is from disk
    assert store.get(a.id) is None and not (tmp_path / f"{a.id}.json").exists()
    (tmp_path / f"{b.id}.parquet").write_bytes(b"PAR1 junk")
    store._memo.clear()
    assert store.get(b.id) is None
    (tmp_path / "0123456789abcdef.json").write_text("{not json")
    assert store.get("0123456789abcdef") is None and store.list() == []
    assert store.get("../../etc/passwd") is None  # ids are checked before any path is built


def test_the_store_is_bounded_oldest_first_and_only_owners_delete(tmp_path):
    markets = [synthetic_market(20, 500, seed=s) for s in range(3)]
    probe = DatasetStore(tmp_path / "probe").put(markets[0])
    store = DatasetStore(tmp_path / "store", size_limit_mb=2.5 * probe.bytes / 1e6)
    ids = [store.put(m, owner="alice").id for m in markets]
    assert [i.id for i in store.list()] == ids[:0:-1]  # the oldest was evicted to fit
    assert store.delete(ids[2], "bob") is False and store.get(ids[2]) is not None
    assert store.delete(ids[2], "alice") is True and store.get(ids[2]) is None
    assert store.list(viewer="carol") == []  # private until shared (a link still opens it)
    assert store.set_shared(ids[1], "carol", True) is False and store.set_shared(ids[1], "alice", True)
    assert [i.id for i in DatasetStore(tmp_path / "store").list(viewer="carol")] == [ids[1]]


def test_without_a_directory_nothing_is_stored(sample):
    store = DatasetStore(None)
    info = store.put(sample)
    assert info.id == dataset_id(sample) and store.get(info.id) is None and store.list() == []
