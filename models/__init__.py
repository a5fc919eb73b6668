"""Models behind one adapter protocol (`models.protocol.RecModel`) and one registry dict."""

from __future__ import annotations

from dataclasses import dataclass

from models.elcrec import ELCRec, ELCRecConfig
from models.encoder import EncoderConfig, SeqEncoder
from models.iclrec import ICLRec, ICLRecConfig
from models.sasrec import CL4SRec, CL4SRecConfig, SASRec, SASRecConfig


@dataclass(frozen=True)
class ModelSpec:
    config: type[EncoderConfig]
    model: type[SeqEncoder]
    summary: str


REGISTRY: dict[str, ModelSpec] = {
    "sasrec": ModelSpec(SASRecConfig, SASRec, "SASRec: next-item BCE with one sampled negative"),
    "cl4srec": ModelSpec(CL4SRecConfig, CL4SRec, "CL4SRec: SASRec + 0.1 x instance InfoNCE of two views"),
    "iclrec": ModelSpec(ICLRecConfig, ICLRec, "ICLRec: + intent InfoNCE against per-epoch k-means prototypes"),
    "elcrec": ModelSpec(ELCRecConfig, ELCRec, "ELCRec: learnable intent centres, clustering loss, fused InfoNCE"),
}

__all__ = ["REGISTRY", "ModelSpec"]
