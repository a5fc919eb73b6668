"""How gSASRec's users' representations collapse on Beauty, under several initialisations and encoders.

    python scripts/probes/gsasrec_collapse.py --batches 76                      # the registry model
    python scripts/probes/gsasrec_collapse.py --batches 26 --init reference     # torch-default init
    python scripts/probes/gsasrec_collapse.py --batches 76 --init reference --set negatives=1
    python scripts/probes/gsasrec_collapse.py --batches 76 --encoder prenorm    # the reference's encoder
    python scripts/probes/gsasrec_collapse.py --epochs 3 --init reference       # validation NDCG@20 by epoch

`--batches N`: N training steps of epoch 0's batches (seed 1, one thread); every 25 steps the mean
cosine between distinct users' last-position outputs over the batch's first 64 sequences
(`bench.evaluate.representation_stats`; near 1: one ranking for all). `--epochs N`: the trainer's
own run (`bench.train.train_run`, paper protocol, patience N) and its validation curve.

Initialisations: `iclrec` (the model's own: N(0, 0.02) everywhere), `reference` (torch's defaults,
as asash/gSASRec-pytorch leaves them: N(0, 1) embeddings, uniform +-1/sqrt(fan in) Linear layers),
`embeddings` (N(0, 1) item and position embeddings only). `--encoder prenorm` swaps in a port of the
reference's own encoder (`transformer_decoder.py`: pre-norm blocks whose keys and values are not
normalised, a feed-forward without activation, a final LayerNorm; 1 head) with the registry
model's loss. The findings are in models/gsasrec.py's docstring.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from bench.batches import training_samples
from bench.data import load_dataset
from bench.evaluate import representation_stats
from bench.presets import preset
from bench.runner import parse_value
from bench.spec import RunSpec, TrainConfig
from bench.train import epoch_generators, make_optimizer, to_batches, train_run
from models.base import ZooModel, attention_mask, multi_head
from models.gsasrec import GSASRec, GSASRecConfig


def torch_default_init(model: nn.Module, gen: torch.Generator, embeddings_only: bool = False) -> None:
    """torch's default initialisation of every Embedding (and Linear, LayerNorm) module, drawn from gen."""
    for m in model.modules():
        if isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, generator=gen)
        elif embeddings_only:
            continue
        elif isinstance(m, nn.Linear):  # nn.Linear.reset_parameters
            nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5), generator=gen)
            if m.bias is not None:
                nn.init.uniform_(m.bias, -1 / math.sqrt(m.in_features), 1 / math.sqrt(m.in_features), generator=gen)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class PreNormBlock(nn.Module):
    """The reference's SASRec block: normalised queries attend causally over the raw sequence."""

    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.first_norm, self.second_norm = nn.LayerNorm(d), nn.LayerNorm(d)
        self.query, self.key, self.value = (nn.Linear(d, d) for _ in range(3))
        self.dense1, self.dense2 = nn.Linear(d, d), nn.Linear(d, d)
        self.heads = heads

    def forward(self, seq: Tensor, mask: Tensor, keep: Tensor, model: ZooModel, p: float) -> Tensor:
        """seq (B, L, D), additive causal mask (B, 1, L, L), keep (B, L, 1) -> (B, L, D)."""
        x = self.first_norm(seq)
        ctx = multi_head(self.query(x), self.key(seq), self.value(seq), self.heads, mask,
                         lambda probs: model.drop(probs * keep[:, None], p))  # padding queries attend to nothing
        x = self.second_norm(ctx + x)
        return (x + model.drop(self.dense2(model.drop(self.dense1(x), p)), p)) * keep


class PreNormGSASRec(ZooModel):
    """The reference's encoder with the registry gSASRec's loss (`GSASRec.losses`)."""

    losses = GSASRec.losses

    def __init__(self, item_size: int, cfg: GSASRecConfig) -> None:
        super().__init__(item_size)
        self.hp, self.objective = cfg, cfg.loss
        self.item_embeddings = nn.Embedding(item_size, cfg.hidden)
        self.position_embeddings = nn.Embedding(cfg.max_len, cfg.hidden)
        self.blocks = nn.ModuleList(PreNormBlock(cfg.hidden, cfg.heads) for _ in range(cfg.layers))
        self.seq_norm = nn.LayerNorm(cfg.hidden)

    def reset_parameters(self, gen: torch.Generator) -> None:
        torch_default_init(self, gen)

    def forward(self, input_ids: Tensor, last_only: bool = False) -> Tensor:
        """(B, L) left-padded ids -> (B, L, D) ((B, 1, D) if last_only), positions right-aligned."""
        ids = input_ids[:, -self.hp.max_len :]
        keep = (ids > 0).to(self.item_embeddings.weight.dtype)[..., None]  # (B, L, 1)
        pos = self.position_embeddings.weight[self.hp.max_len - ids.shape[1] :]
        seq = self.drop(self.item_embeddings(ids) + pos, self.hp.dropout) * keep
        mask = attention_mask(ids, causal=True)
        for block in self.blocks:
            seq = block(seq, mask, keep, self, self.hp.dropout)
        return self.seq_norm(seq[:, -1:] if last_only else seq)


def build(hp: dict[str, Any], item_size: int, init: str, encoder: str, seed: int) -> Any:
    model = (PreNormGSASRec(item_size, GSASRecConfig(**{"heads": 1, **hp})) if encoder == "prenorm"
             else GSASRec(item_size, GSASRecConfig(**hp)))
    model.reset_parameters(torch.Generator().manual_seed(seed))
    if init != "iclrec":
        torch_default_init(model, torch.Generator().manual_seed(seed), embeddings_only=init == "embeddings")
    return model


def probe_batches(ns: argparse.Namespace, hp: dict[str, Any]) -> None:
    data = load_dataset("beauty", ns.data_dir)
    model = build(hp, data.item_size, ns.init, ns.encoder, 1)
    rng, model.generator = epoch_generators(1, 0, torch.device("cpu"))
    batches = to_batches(training_samples(model.samples, data, rng, model.sample_options()), 256, torch.device("cpu"))
    opt = make_optimizer(model, TrainConfig())
    for i, batch in enumerate(batches[: ns.batches]):
        model.train()
        loss = model.losses(batch)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i % 25 == 0:
            model.eval()
            with torch.no_grad():
                cos = representation_stats(model(batch.input_ids[:64], last_only=True)[:, -1])["mean_cosine"]
            print(f"after batch {i + 1}: loss {float(loss.detach()):.4f}, users' mean cosine {cos:.3f}", flush=True)


def probe_epochs(ns: argparse.Namespace, hp: dict[str, Any]) -> None:
    if ns.encoder != "iclrec":
        raise SystemExit("--epochs trains the registry model: --encoder prenorm is for --batches")
    if ns.init != "iclrec":  # the trainer re-initialises from the seed: re-initialise after it
        own = GSASRec.reset_parameters

        def reset(self: GSASRec, gen: torch.Generator) -> None:
            own(self, gen)
            torch_default_init(self, gen, embeddings_only=ns.init == "embeddings")

        GSASRec.reset_parameters = reset  # type: ignore[method-assign,assignment]
    spec = RunSpec("gsasrec", "beauty", 1, hp, {"epochs": ns.epochs, "patience": ns.epochs},
                   data_dir=str(ns.data_dir), threads=1)
    rec = train_run(spec)
    print("validation NDCG@20 by epoch:", ", ".join(f"{c['valid_NDCG@20']:.4f}" for c in rec["curve"]),
          "| losses:", ", ".join(f"{c['losses']['loss']:.3f}" for c in rec["curve"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=0)
    ap.add_argument("--init", choices=("iclrec", "reference", "embeddings"), default="iclrec")
    ap.add_argument("--encoder", choices=("iclrec", "prenorm"), default="iclrec")
    ap.add_argument("--set", nargs="*", default=[], help="key=value overrides of the Beauty preset")
    ap.add_argument("--data-dir", type=Path, default=Path("../shared/datasets"))
    ns = ap.parse_args()
    torch.set_num_threads(1)
    hp = {**preset("beauty", "gsasrec"), **{k: parse_value(v) for k, v in (s.split("=", 1) for s in ns.set)}}
    if ns.batches:
        probe_batches(ns, hp)
    if ns.epochs:
        probe_epochs(ns, hp)


if __name__ == "__main__":
    main()
