"""The authors' loss fixture: our loss terms and gradient norms vs theirs (relative errors)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from bench.modelio import build_model, load_checkpoint
from models.protocol import Batch

COMMITTED_FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
#: fixture key -> our loss-term key, per model
TERMS = {
    "elcrec": {"rec_loss": "rec", "instance_cl_loss_shift": "instance_cl", "intent_cl_loss": "intent_cl",
               "cluster_alignment_term": "alignment", "cluster_separation_term": "separation", "joint_loss": "loss"},
    "iclrec": {"rec_loss": "rec", "instance_cl_loss": "instance_cl", "intent_cl_loss": "intent_cl",
               "joint_loss": "loss"},
}


def load_batch(fixtures: Path, device: str = "cpu") -> Batch:
    b = torch.load(fixtures / "beauty_batch256.pt", weights_only=True, map_location=device)
    return Batch(b["input_ids"], b["target_pos"], b["target_neg"], b["view_1"], b["view_2"])


def fixture_errors(model_name: str, shared: Path | None = None,
                   losses: Callable[[Any, Batch], dict[str, Tensor]] | None = None, device: str = "cpu",
                   fixtures: Path | None = None, checkpoints: Path | None = None) -> dict[str, float]:
    """Relative error of every loss term and listed gradient norm on the Beauty fixture batch.

    `losses(model, batch)` computes the terms (default: the model's own `losses`); `bench.perf.recipe`
    passes its plain re-statement of the authors' computation through the same check. `device`
    runs the check where training runs (CUDA has its own kernels for every op). The files are taken
    from `shared`'s layout (reference/fixtures, checkpoints) unless `fixtures` or `checkpoints` name
    their folders; the fixture defaults to the copy committed under tests/fixtures."""
    fixtures = fixtures or (shared / "reference" / "fixtures" if shared else COMMITTED_FIXTURES)
    if checkpoints is None:
        if shared is None:
            raise ValueError("fixture_errors needs `shared` or `checkpoints`")
        checkpoints = shared / "checkpoints"
    expected = json.loads((fixtures / "loss_expected.json").read_text())[model_name]
    stem = "ELCRec" if model_name == "elcrec" else "ICLRec"
    model = load_checkpoint(model_name, checkpoints / f"{stem}-Beauty-1.pt", 12103)
    if model_name == "elcrec":  # the authors' Beauty settings, same weights
        state = model.state_dict()
        model = build_model("elcrec", 12103, {"layers": 1, "k": 256, "alpha": float(expected["trade_off"]),
                                              "fusion": "shift"})
        model.load_state_dict(state)
    else:
        centres = torch.load(checkpoints / "ELCRec-Beauty-1.pt", weights_only=True, map_location="cpu")
        model.set_centroids(centres["cluster_centers"])  # type: ignore[attr-defined]
    model.to(device)  # type: ignore[attr-defined]
    model.eval()  # the fixture was computed without dropout
    out = (losses or type(model).losses)(model, load_batch(fixtures, device))
    out["loss"].backward()  # type: ignore[no-untyped-call]
    errors = {k: abs(out[ours].item() - expected[k]) / abs(expected[k]) for k, ours in TERMS[model_name].items()}
    grads = dict(model.named_parameters())  # type: ignore[attr-defined]
    for key, norm in expected["joint_grad_norms"].items():
        errors[f"grad {key}"] = abs(grads[key].grad.norm().item() - norm) / norm
    return errors
