"""`python -m bench eval`: a checkpoint's test metrics, printed and optionally recorded, with how
alike its users' scoring vectors are and, for a model with intent centres, how many of them its
users use (`bench.diagnostics`): the released ELCRec checkpoints' clustering, measured."""

from __future__ import annotations

import argparse
import json
import sys

import torch

from bench.config import EvalConfig, from_namespace
from bench.diagnostics import cluster_diagnostics
from bench.evaluate import device_info, evaluate


def cmd_eval(ns: argparse.Namespace) -> int:
    from tabulate import tabulate

    from bench.data import load_dataset, sha256_file
    from bench.modelio import check_model, load_checkpoint
    from bench.results.records import append_record, peak_rss_mb, provenance
    from bench.results.schema import Device, EvalRecord, Memory, RecordedProtocol

    cfg = from_namespace(EvalConfig, ns)
    check_model(cfg.model)
    data = load_dataset(cfg.dataset, cfg.data_dir)
    model = load_checkpoint(cfg.model, cfg.checkpoint, data.item_size)
    res = evaluate(model, data, "test", cfg.seen_items, describe_users=True)
    diag = cluster_diagnostics(model, data, torch.device("cpu"))
    peak_mb = peak_rss_mb()
    if cfg.json:
        print(json.dumps({**res.metrics, "protocol": res.protocol.as_dict(), "peak_rss_mb": peak_mb,
                          "diagnostics": diag, "representation": res.representation}))
    else:
        rows = [[k, f"{v:.4f}"] for k, v in res.metrics.items()]
        print(f"{cfg.model} on {cfg.dataset} ({cfg.checkpoint.name}), seen items: {cfg.seen_items}, "
              f"{data.n_users} users x {data.item_size} items")
        print(tabulate(rows, headers=["metric", "value"], tablefmt="github"))
        if diag:
            print(f"users assigned to {diag['centres_used']} of its centres, effective clusters "
                  f"{diag['effective_clusters']:.2f} (exp of the usage entropy)")
    if cfg.out is not None:
        record = EvalRecord(model=cfg.model, dataset=cfg.dataset, checkpoint=str(cfg.checkpoint),
                            checkpoint_sha256=sha256_file(cfg.checkpoint), metrics=res.metrics,
                            protocol=RecordedProtocol.from_json(res.protocol.as_dict()), n_users=data.n_users,
                            memory=Memory(peak_rss_mb=peak_mb), device=Device.from_json(device_info("cpu")),
                            provenance=provenance(), diagnostics=diag, representation=res.representation)
        rec = append_record(cfg.out, record, {**res.per_user, "rank": res.ranks})
        print(f"record {rec.id} appended to {cfg.out}", file=sys.stderr)
    return 0
