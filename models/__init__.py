"""Models behind one adapter protocol (`models.protocol.RecModel`) and one registry dict.

A model is built as `model(item_size, config)`, with `n_users` appended when its class sets
`needs_users` (user embeddings: BPR-MF, Caser) and the (item_size, A) item-attribute matrix when it
sets `needs_attributes` (S3-Rec).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from models.bert4rec import BERT4Rec, BERT4RecConfig
from models.bprmf import BPRMF, BPRMFConfig
from models.bsarec import BSARec, BSARecConfig
from models.caser import Caser, CaserConfig
from models.duorec import DuoRec, DuoRecConfig
from models.elcrec import ELCRec, ELCRecConfig
from models.fmlprec import FMLPRec, FMLPRecConfig
from models.gru4rec import GRU4Rec, GRU4RecConfig
from models.gsasrec import GSASRec, GSASRecConfig
from models.iclrec import ICLRec, ICLRecConfig
from models.s3rec import S3Rec, S3RecConfig
from models.sasrec import CL4SRec, CL4SRecConfig, SASRec, SASRecConfig
from models.sasrec_ce import SASRecCE, SASRecCEConfig


@dataclass(frozen=True)
class ModelSpec:
    config: type[Any]  # a frozen dataclass of hyper-parameters, validated in __post_init__
    model: type[Any]  # implements models.protocol.RecModel
    summary: str

    @property
    def needs_users(self) -> bool:
        return bool(getattr(self.model, "needs_users", False))

    @property
    def needs_attributes(self) -> bool:
        return bool(getattr(self.model, "needs_attributes", False))


REGISTRY: dict[str, ModelSpec] = {
    "sasrec": ModelSpec(SASRecConfig, SASRec, "SASRec: next-item BCE with one sampled negative"),
    "cl4srec": ModelSpec(CL4SRecConfig, CL4SRec, "CL4SRec: SASRec + 0.1 x instance InfoNCE of two views"),
    "iclrec": ModelSpec(ICLRecConfig, ICLRec, "ICLRec: + intent InfoNCE against per-epoch k-means prototypes"),
    "elcrec": ModelSpec(ELCRecConfig, ELCRec, "ELCRec: learnable intent centres, clustering loss, fused InfoNCE"),
    "sasrec_ce": ModelSpec(SASRecCEConfig, SASRecCE, "SASRec encoder, softmax CE over all items (prefixes=true: "
                           "prefix samples)"),
    "bprmf": ModelSpec(BPRMFConfig, BPRMF, "BPR-MF: user x item embeddings, BPR loss, one uniform negative"),
    "gru4rec": ModelSpec(GRU4RecConfig, GRU4Rec, "GRU4Rec: GRU over the sequence, CE over all items at every step"),
    "bsarec": ModelSpec(BSARecConfig, BSARec, "BSARec: attention + Fourier low/high-pass bias, prefix samples, CE"),
    "fmlprec": ModelSpec(FMLPRecConfig, FMLPRec, "FMLP-Rec: learnable Fourier filters + MLP, prefix samples, CE"),
    "gsasrec": ModelSpec(GSASRecConfig, GSASRec, "gSASRec: SASRec encoder, 256 sampled negatives, gBCE t=0.75 "
                         "(loss=sampled-softmax)"),
    "bert4rec": ModelSpec(BERT4RecConfig, BERT4Rec, "BERT4Rec: bidirectional encoder, Cloze task (mask 0.6), CE"),
    "caser": ModelSpec(CaserConfig, Caser, "Caser: horizontal/vertical CNN over the last 5 items + user, CE"),
    "duorec": ModelSpec(DuoRecConfig, DuoRec, "DuoRec: SASRec encoder, CE + 0.1 x dropout/same-target InfoNCE"),
    "s3rec": ModelSpec(S3RecConfig, S3Rec, "S3-Rec: attribute/item/segment pre-training, then SASRec fine-tuning"),
}

__all__ = ["REGISTRY", "ModelSpec"]
