from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.results.records import read_records
from bench.results.schema import EvalRecord


def bench(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bench", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_eval_json_and_record(checkpoints: Path, shared_data: Path, tmp_path: Path) -> None:
    res = bench("eval", "--model", "iclrec", "--dataset", "beauty", "--checkpoint",
                str(checkpoints / "ICLRec-Beauty-1.pt"), "--data-dir", str(shared_data), "--json",
                "--out", str(tmp_path))
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) >= {"HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20", "MRR", "protocol"}
    assert f"{out['NDCG@5']:.4f}" == "0.0326" and out["protocol"]["seen_items"] == "zero"
    (rec,) = read_records([tmp_path])
    assert isinstance(rec, EvalRecord) and rec.metrics == {k: out[k] for k in rec.metrics}
    assert rec.protocol.dataset_sha256 == out["protocol"]["dataset_sha256"] and rec.n_users
    assert rec.provenance.libraries["torch"] and rec.checkpoint_sha256
    assert rec.device.type == "cpu" and rec.device.torch_threads  # the report's provenance shows it
    assert rec.memory.peak_rss_mb and rec.memory.peak_rss_mb > 100 and out["peak_rss_mb"] > 100  # torch, Beauty, model


def test_an_evaluated_checkpoint_says_how_many_intents_its_users_use(tmp_path: Path) -> None:
    """`bench eval` of a model with intent centres records how its users spread over them (as a
    training run's record does), and the report lists the checkpoint with them."""
    import torch

    from bench.data import load_dataset
    from bench.diagnostics import cluster_diagnostics
    from bench.modelio import build_model

    data_name = "synthetic:users=300,items=60,intents=3"
    data = load_dataset(data_name)
    torch.manual_seed(0)
    model = build_model("elcrec", data.item_size, {"k": 8})
    model.cluster_centers.data.normal_()  # type: ignore[operator,union-attr]  # eight distinct centres
    torch.save(model.state_dict(), tmp_path / "ck.pt")
    res = bench("eval", "--model", "elcrec", "--dataset", data_name, "--checkpoint", str(tmp_path / "ck.pt"),
                "--out", str(tmp_path / "rec"))
    assert res.returncode == 0, res.stderr
    (rec,) = read_records([tmp_path / "rec"])
    assert isinstance(rec, EvalRecord) and rec.representation and 0 < rec.representation["mean_cosine"] <= 1
    want = cluster_diagnostics(model, data, torch.device("cpu"))
    assert want and rec.diagnostics == pytest.approx(want) and "of its centres, effective clusters" in res.stdout
    assert bench("report", str(tmp_path / "rec"), "--out", str(tmp_path / "rep")).returncode == 0
    row = next(r for r in (tmp_path / "rep" / "report.md").read_text().splitlines() if "| ck.pt " in r)
    assert f"| {want['centres_used']} / {want['positions_centres_used']} " in row
    assert f"| {want['effective_clusters']:.2f} / {want['positions_effective_clusters']:.1f} " in row


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nosuchmodel", "--dataset", "beauty"], "unknown model 'nosuchmodel'; known: sasrec, cl4srec"),
        (["--model", "elcrec", "--dataset", "ml-1m"], "unknown dataset 'ml-1m'; known: beauty"),
        (["--model", "iclrec", "--dataset", "beauty", "CK=ELCRec-Beauty-1.pt"], "unexpected: cluster_centers"),
        (["--model", "elcrec", "--dataset", "toys", "CK=ELCRec-Beauty-1.pt"],
         "item_embeddings.weight (12103, 64) vs (11926, 64)"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args: list[str], message: str, checkpoints: Path, shared_data: Path, tmp_path: Path
) -> None:
    ck = next((a.split("=")[1] for a in args if a.startswith("CK=")), "ELCRec-Beauty-1.pt")
    args = [a for a in args if not a.startswith("CK=")]
    res = bench("eval", *args, "--checkpoint", str(checkpoints / ck), "--data-dir", str(shared_data),
                "--out", str(tmp_path / "out"))
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_malformed_data_names_file_and_line(checkpoints: Path, tmp_path: Path) -> None:
    (tmp_path / "Beauty.txt").write_text("1 2 3 4\n2 5 x 7\n")
    res = bench("eval", "--model", "elcrec", "--dataset", "beauty", "--checkpoint",
                str(checkpoints / "ELCRec-Beauty-1.pt"), "--data-dir", str(tmp_path))
    assert res.returncode == 2 and "sha256 mismatch" in res.stderr  # the checksum is checked first


def test_list_names_models_and_datasets() -> None:
    res = bench("list")
    assert res.returncode == 0
    for name in ("elcrec", "iclrec", "sasrec", "beauty", "yelp", "synthetic"):
        assert name in res.stdout
    studies = res.stdout.split("studies (python -m bench reproduce FILE [--dry-run]):\n")[1].splitlines()
    shipped = sorted(p.name for p in (Path(__file__).parents[1] / "experiments").glob("*.toml"))
    assert [line.split(":")[0].split(" [")[0].strip() for line in studies] == [f"experiments/{n}" for n in shipped]
    assert all(line.split(": ", 1)[1] for line in studies)  # each with its description


def test_perf_rejects_zero_repeats_before_timing_anything(tmp_path: Path) -> None:
    res = bench("perf", "--repeat", "0", "--out", str(tmp_path / "perf.json"))
    assert res.returncode == 2 and res.stderr.strip() == "error: --repeat must be at least 1"
    assert not (tmp_path / "perf.json").exists()


@pytest.mark.parametrize(
    ("args", "blamed", "says"),
    [(["run", "--seeds", "x"], "run", "argument --seeds: expected a comma-separated list of int: 'x'"),
     (["run", "--profile", "nope"], "run", "invalid choice: 'nope'"),
     (["perf", "--datasets", "beauty"], "perf", "unrecognized arguments: --datasets beauty"),
     (["gate"], "gate", "the following arguments are required: --baseline, --current"),
     (["bogus"], "", "invalid choice: 'bogus'"),
     ([], "", "the following arguments are required: command")],
)
def test_a_malformed_command_line_is_one_line_naming_the_help_to_read(args: list[str], blamed: str,
                                                                        says: str) -> None:
    """Bad flags are bad input like any other: exit 2 and one line, not argparse's usage block, and the
    line names the help of the command whose options were wrong."""
    res = bench(*args)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error: ") and says in res.stderr
    assert f"`python -m bench {blamed} --help`".replace("  ", " ") in res.stderr, res.stderr


def test_every_subcommand_has_a_working_help() -> None:
    from bench.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"run", "reproduce", "eval", "report", "gate", "list", "perf", "fetch", "cost",
                                 "calibrate"}
    for name, sub in subs.choices.items():
        text = sub.format_help()  # a stray % in a help string raises here
        assert f"python -m bench {name}" in text


@pytest.mark.parametrize(
    "command",
    [["run", "--models", "sasrec", "--profile", "smoke"],
     ["report", str(Path(__file__).parents[1] / "reports" / "beauty-10ep")]],
)
def test_an_output_path_that_is_a_file_is_a_one_line_error_and_the_file_survives(
    command: list[str], tmp_path: Path
) -> None:
    target = tmp_path / "notes.txt"
    target.write_text("mine\n")
    res = bench(*command, "--out", str(target))
    assert res.returncode == 2 and res.stderr.startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert target.read_text() == "mine\n"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("text", "not a torch checkpoint (Unsupported operand"),
        ("zip", "not a torch checkpoint (RuntimeError: PytorchStreamReader failed"),
        ("pickle", "refused by the safe loader: it holds the Python object argparse.Namespace, not only tensors"),
        ("missing", "no such checkpoint file"),
    ],
)
def test_a_checkpoint_that_is_no_torch_file_or_unsafe_is_one_line_exit_2(content: str, message: str,
                                                                         tmp_path: Path) -> None:
    import torch

    ck = tmp_path / "ck.pt"
    if content == "text":
        ck.write_text("not a checkpoint\n")
    elif content == "zip":
        ck.write_bytes(b"PK\x03\x04" + bytes(64))
    elif content == "pickle":  # a pickled object whose loading would run code the safe loader refuses
        torch.save({"item_embeddings.weight": torch.zeros(2, 2), "x": argparse.Namespace(a=1)}, ck)
    res = bench("eval", "--model", "sasrec", "--dataset", "synthetic:users=50,items=20", "--checkpoint", str(ck))
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
