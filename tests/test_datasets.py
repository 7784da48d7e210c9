"""The server-side dataset store, on a real directory: content ids, verification on read, bounds, owners."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np

from engine import load_market, synthetic_market
from engine.server.datasets import SERVER, DatasetStore, dataset_id, to_frame, valid_id


def test_a_dataset_round_trips_bit_for_bit_and_keeps_its_name_and_warnings(tmp_path, sample):
    store = DatasetStore(tmp_path)
    info = store.put(sample, owner="alice")
    assert info.id == dataset_id(sample) and valid_id(info.id) and info.symbols == 6
    again = DatasetStore(tmp_path).get(info.id, viewer=SERVER)  # a fresh store: read from disk, not memory
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
    assert store.get(a.id, viewer=SERVER) is None and not (tmp_path / f"{a.id}.json").exists()
    (tmp_path / f"{b.id}.parquet").write_bytes(b"PAR1 junk")
    store._memo.clear()
    assert store.get(b.id, viewer=SERVER) is None
    (tmp_path / "0123456789abcdef.json").write_text("{not json")
    assert store.get("0123456789abcdef", viewer=SERVER) is None and store.list(viewer=SERVER) == []
    assert store.get("../../etc/passwd", viewer=SERVER) is None  # ids are checked before any path is built


def test_the_store_is_bounded_oldest_first_and_only_owners_delete(tmp_path):
    markets = [synthetic_market(20, 500, seed=s) for s in range(3)]
    probe = DatasetStore(tmp_path / "probe").put(markets[0])
    store = DatasetStore(tmp_path / "store", size_limit_mb=2.5 * probe.bytes / 1e6)
    ids = [store.put(m, owner="user:alice").id for m in markets]
    assert [i.id for i in store.list(viewer=SERVER)] == ids[:0:-1]  # the oldest was evicted to fit
    assert store.delete(ids[2], "user:bob") is False and store.get(ids[2], viewer=SERVER) is not None
    assert store.delete(ids[2], "user:alice") is True and store.get(ids[2], viewer=SERVER) is None
    assert store.list(viewer="user:carol") == []  # private until shared
    assert store.set_shared(ids[1], "user:carol", True) is False and store.set_shared(ids[1], "user:alice", True)
    assert [i.id for i in DatasetStore(tmp_path / "store").list(viewer="user:carol")] == [ids[1]]


def test_a_private_dataset_opens_for_its_owner_only_until_shared(tmp_path, sample):
    store = DatasetStore(tmp_path)
    info = store.put(sample, owner="user:alice")
    assert not info.shared and store.get(info.id, viewer="user:alice") is not None
    for stranger in ("user:bob", "browser:" + "0" * 32, "api:anonymous"):
        assert store.get(info.id, viewer=stranger) is None and store.info(info.id, viewer=stranger) is None
        assert store.list(viewer=stranger) == []
    store._memo.clear()
    assert DatasetStore(tmp_path).get(info.id, viewer="user:bob") is None  # from disk too
    assert store.set_shared(info.id, "user:alice", True)
    assert store.get(info.id, viewer="user:bob").fingerprint == sample.fingerprint


def test_without_real_identities_nothing_is_private(tmp_path, sample):
    """A browser cookie or an anonymous API caller proves nothing: what they upload is open to all."""
    store = DatasetStore(tmp_path)
    info = store.put(sample, owner="browser:" + "a" * 32)
    assert info.shared and store.get(info.id, viewer="user:bob") is not None


def test_identical_bytes_are_stored_once_with_one_listing_per_uploader(tmp_path, sample):
    store = DatasetStore(tmp_path)
    alice = store.put(replace(sample, name="alice_secret_positions.csv"), owner="user:alice")
    bob = store.put(replace(sample, name="bobs_prices.csv"), owner="user:bob")
    assert alice.id == bob.id and len(list(tmp_path.glob("*.parquet"))) == 1
    assert (bob.name, bob.owner, bob.shared) == ("bobs_prices.csv", "user:bob", False)  # never alice's listing
    assert [i.name for i in store.list(viewer="user:bob")] == ["bobs_prices.csv"]
    assert store.get(bob.id, viewer="user:bob").name == "bobs_prices.csv"
    assert store.set_shared(bob.id, "user:bob", True)
    assert store.info(alice.id, viewer="user:alice").shared is False  # bob's sharing is bob's listing only
    assert store.delete(alice.id, "user:alice")  # her listing goes, the bytes stay for bob
    assert store.get(bob.id, viewer="user:bob") is not None and store.info(bob.id, "user:alice").owner == "user:bob"
    assert store.delete(bob.id, "user:bob") and not list(tmp_path.glob("*.parquet"))


def test_temporary_files_left_by_a_crash_are_removed_by_age_or_when_their_writer_is_gone(tmp_path, sample):
    import os
    import subprocess
    import sys
    import time

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    me = os.getpid()
    stale, fresh = tmp_path / f".x.{me}.456.tmp", tmp_path / f".y.{me}.456.tmp"
    killed = tmp_path / f".z.{int(gone.stdout)}.456.tmp"  # its writer was killed mid-write: no hourly wait
    for path in (stale, fresh, killed):
        path.write_bytes(b"half a parquet")
    os.utime(stale, (time.time() - 7200, time.time() - 7200))
    DatasetStore(tmp_path)
    assert not stale.exists() and not killed.exists() and fresh.exists()


def test_without_a_directory_nothing_is_stored(sample):
    store = DatasetStore(None)
    info = store.put(sample)
    assert (
        info.id == dataset_id(sample) and store.get(info.id, viewer=SERVER) is None and store.list(viewer=SERVER) == []
    )
