"""`bench fetch`: from a local folder and from a loopback HTTP server, good and bad digests."""

from __future__ import annotations

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import tests.conftest as conftest
from bench.cli import main
from bench.data import fetch as F


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on 127.0.0.1 serving tmp_path/www: (base URL, served folder)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(www))
    handler.log_message = lambda *a: None  # type: ignore[attr-defined]
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", www
    httpd.shutdown()
    httpd.server_close()


def test_http_download_is_verified_and_atomic(server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = server
    body = b"\x80 a checkpoint's bytes " * 1000
    (www / "ck.pt").write_bytes(body)
    good = F.Artifact("checkpoints", "ck", "ck.pt", (f"{url}/missing.pt", f"{url}/ck.pt"), sha(body))
    how = F.fetch_one(good, tmp_path / "cache")
    assert how == f"downloaded from {url}/ck.pt"  # the first URL's 404 falls through to the second
    assert (tmp_path / "cache" / "ck.pt").read_bytes() == body
    assert F.fetch_one(good, tmp_path / "cache") == f"present in {tmp_path / 'cache'}"


def test_http_download_with_a_wrong_digest_leaves_nothing(server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = server
    (www / "ck.pt").write_bytes(b"tampered")
    bad = F.Artifact("checkpoints", "ck", "ck.pt", (f"{url}/ck.pt",), "0" * 64)
    with pytest.raises(OSError, match=f"sha256 mismatch: expected {'0' * 64}, got {sha(b'tampered')}"):
        F.fetch_one(bad, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # no file, no temporary


def test_a_wrong_cached_file_is_replaced(server: tuple[str, Path], tmp_path: Path) -> None:
    url, www = server
    (www / "d.txt").write_bytes(b"right")
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "d.txt").write_bytes(b"wrong")
    art = F.Artifact("datasets", "d", "d.txt", (f"{url}/d.txt",), sha(b"right"))
    assert F.fetch_one(art, tmp_path / "cache").startswith("downloaded")
    assert (tmp_path / "cache" / "d.txt").read_bytes() == b"right"


def test_file_urls_work_too(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_bytes(b"x")
    art = F.Artifact("datasets", "d", "d.txt", ((tmp_path / "src.txt").as_uri(),), sha(b"x"))
    assert F.fetch_one(art, tmp_path / "cache").startswith("downloaded from file://")


def test_cli_copies_the_real_checkpoints_from_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    checkpoints = conftest.locate("checkpoints")  # all four
    # `--from` a folder laid out like ../shared (<kind>/<file>), into a fresh cache
    assert main(["fetch", "--what", "checkpoints", "--from", str(checkpoints.parent), "--cache",
                 str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert out.count("ok     checkpoints/") == 4 and "copied from" in out
    for art in F.artifacts("checkpoints"):
        assert F.sha256_file(tmp_path / "c" / art.file) == art.sha256


def test_cli_refuses_a_local_file_with_a_wrong_digest(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "Beauty.txt").write_text("1 1 2 3\n")
    rc = main(["fetch", "--what", "datasets", "--only", "beauty", "--from", str(tmp_path / "src"),
               "--cache", str(tmp_path / "c")])
    captured = capsys.readouterr()
    assert rc == 2
    assert "FAILED datasets/beauty (Beauty.txt): sha256 mismatch" in captured.out
    assert "error: 1 file(s) not fetched: Beauty.txt" in captured.err
    assert list((tmp_path / "c").iterdir()) == []


def test_cli_rejects_unknown_names_and_missing_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fetch", "--only", "movielens"]) == 2
    assert "unknown name(s) movielens" in capsys.readouterr().err
    assert main(["fetch", "--from", str(tmp_path / "nope")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_manifests_agree_with_the_shared_files() -> None:
    checkpoints, shared_data = conftest.locate("checkpoints"), conftest.locate("datasets")
    for art in F.artifacts("checkpoints"):
        assert F.sha256_file(checkpoints / art.file) == art.sha256, art.file
    for art in F.artifacts("datasets"):
        assert F.sha256_file(shared_data / art.file) == art.sha256, art.file


def test_without_the_files_tests_skip_with_the_fetch_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(conftest, "REPO", tmp_path / "clone")  # no ../shared next to it
    monkeypatch.setattr(conftest, "default_cache", lambda kind: tmp_path / "cache" / kind)
    monkeypatch.delenv("INTENTBENCH_SHARED", raising=False)
    with pytest.raises(pytest.skip.Exception, match="fetch them with: python -m bench fetch --what checkpoints"):
        conftest.locate("checkpoints")
    monkeypatch.setenv("INTENTBENCH_SHARED", str(tmp_path / "mine"))
    (tmp_path / "mine" / "datasets").mkdir(parents=True)
    for art in F.artifacts("datasets"):
        (tmp_path / "mine" / "datasets" / art.file).write_text("")
    assert conftest.locate("datasets") == tmp_path / "mine" / "datasets"
