from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from bench.data import datasets as D
from bench.data.synthetic import synthetic_from_spec
from bench.errors import BenchError
from tests.conftest import locate


def write(tmp: Path, text: str, name: str = "Tiny.txt") -> Path:
    p = tmp / name
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("1 2 3 4\n2 5 x 7\n", 2, "non-integer token 'x'"),
        ("1 2 3 4\n2 5 6\n", 2, "has 2 items"),
        ("1 2 3 4\n1 5 6 7\n", 2, "user 1 repeated"),
        ("1 2 3 4\n\n2 5 6 7\n", 2, "empty line"),
        ("1 2 3 4\n2 0 6 7\n", 2, "positive"),
    ],
)
def test_parser_names_file_and_line(tmp_path: Path, text: str, line: int, what: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(BenchError) as e:
        D.parse_sequences(p)
    assert f"{p}:{line}:" in str(e.value) and what in str(e.value)


def test_parser_accepts_trailing_blank_lines(tmp_path: Path) -> None:
    seqs = D.parse_sequences(write(tmp_path, "1 2 3 4\n2 5 6 7 8\n\n\n"))
    assert [s.tolist() for s in seqs] == [[2, 3, 4], [5, 6, 7, 8]]


def test_leave_one_out_split_and_windows() -> None:
    seqs = [np.arange(1, 8), np.array([9, 8, 7])]  # 7 items and the 3-item minimum
    d = D.SeqData.from_sequences("t", "0", seqs)
    inputs, targets, _hist_end = d.eval_split("test")
    assert targets.tolist() == [7, 7]
    assert inputs[0, -6:].tolist() == [1, 2, 3, 4, 5, 6] and inputs[0, :-6].max() == 0
    assert inputs[1, -2:].tolist() == [9, 8]
    vin, vt, _ = d.eval_split("valid")
    assert vt.tolist() == [6, 8] and vin[0, -5:].tolist() == [1, 2, 3, 4, 5]
    start, end = d.train_arrays()
    assert d.flat[start[0] : end[0]].tolist() == [1, 2, 3, 4] and end[1] == start[1]
    assert d.item_size == 11  # max id 9, + padding, + mask token


def test_windows_keep_the_last_fifty() -> None:
    d = D.SeqData.from_sequences("t", "0", [np.arange(1, 80)])
    inputs, targets, _ = d.eval_split("test")
    assert inputs[0].tolist() == list(range(29, 79)) and targets[0] == 79


def manifest_entry(tmp: Path, text: str, sha: str | None = None) -> D.DatasetEntry:
    src = write(tmp, text, "src.txt")
    digest = sha or hashlib.sha256(text.encode()).hexdigest()
    return D.DatasetEntry("tiny", "Tiny.txt", (src.as_uri(),), digest, 2, 7, 7)


def test_download_verifies_and_renames_atomically(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "DATASETS_DIR", tmp_path / "ds")
    entry = manifest_entry(tmp_path, "1 1 2 3\n2 4 5 6 7\n")
    path = D.resolve_file(entry, None)
    assert path == tmp_path / "ds" / "cache" / "Tiny.txt" and path.read_text().startswith("1 1 2 3")
    assert [p.name for p in path.parent.iterdir()] == ["Tiny.txt"]  # no temporary left behind


def test_download_with_wrong_digest_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "DATASETS_DIR", tmp_path / "ds")
    entry = manifest_entry(tmp_path, "1 1 2 3\n", sha="0" * 64)
    with pytest.raises(BenchError, match=r"sha256 mismatch.*--data-dir"):
        D.resolve_file(entry, None)
    assert list((tmp_path / "ds" / "cache").iterdir()) == []


def test_offline_error_says_how_to_point_at_a_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(D, "DATASETS_DIR", tmp_path / "ds")
    entry = D.DatasetEntry("tiny", "Tiny.txt", ("http://127.0.0.1:9/Tiny.txt",), "0" * 64, 1, 1, 1)
    with pytest.raises(BenchError, match="INTENTBENCH_DATA_DIR"):
        D.resolve_file(entry, None)


def test_resolution_order_flag_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entry = D.DatasetEntry("tiny", "Tiny.txt", (), "0" * 64, 1, 1, 1)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    write(tmp_path / "a", "x")
    write(tmp_path / "b", "y")
    monkeypatch.setenv(D.ENV_DATA_DIR, str(tmp_path / "b"))
    assert D.resolve_file(entry, tmp_path / "a") == tmp_path / "a" / "Tiny.txt"
    assert D.resolve_file(entry, None) == tmp_path / "b" / "Tiny.txt"
    with pytest.raises(BenchError, match="does not exist"):
        D.resolve_file(entry, tmp_path)


def test_sha256_mismatch_names_both_digests(tmp_path: Path) -> None:
    write(tmp_path, "1 1 2 3\n", "Beauty.txt")
    with pytest.raises(BenchError) as e:
        D.load_dataset("beauty", tmp_path)
    msg = str(e.value)
    assert D.manifest()["beauty"].sha256 in msg and hashlib.sha256(b"1 1 2 3\n").hexdigest() in msg


def test_unknown_dataset_lists_known_names() -> None:
    with pytest.raises(BenchError, match="known: beauty, sports, toys, yelp, lastfm, video, synthetic"):
        D.load_dataset("movielens")


@pytest.mark.parametrize("name", ["beauty", "sports", "toys", "yelp"])
def test_released_files_match_manifest(name: str) -> None:
    d = D.load_dataset(name, locate("datasets", (D.manifest()[name].file,)))  # verifies sha256 and statistics
    assert d.n_users == D.manifest()[name].users and d.item_size == D.manifest()[name].items + 2


def test_synthetic_is_deterministic_and_has_planted_intents() -> None:
    a = synthetic_from_spec("synthetic:users=300,items=120,intents=4,seed=3")
    b = synthetic_from_spec("synthetic:users=300,items=120,intents=4,seed=3")
    c = synthetic_from_spec("synthetic:users=300,items=120,intents=4,seed=4")
    assert a.sha256 == b.sha256 and np.array_equal(a.flat, b.flat) and a.sha256 != c.sha256
    assert a.labels is not None and set(a.labels.tolist()) == {0, 1, 2, 3}
    groups = np.array_split(np.arange(1, 121), 4)
    in_label_group = [np.isin(a.flat[s:e], groups[lab]).mean()
                      for s, e, lab in zip(a.starts, a.ends, a.labels, strict=True)]
    assert np.mean(in_label_group) > 0.6  # most of a user's items come from its planted intent
    assert (a.ends - a.starts).min() >= 5


def test_synthetic_rejects_bad_options() -> None:
    with pytest.raises(BenchError, match="unknown option 'user'"):
        synthetic_from_spec("synthetic:user=3")
    with pytest.raises(BenchError, match="needs a number"):
        synthetic_from_spec("synthetic:users=many")
