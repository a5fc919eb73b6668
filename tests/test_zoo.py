"""Every registry entry, tested without naming it: a model added to `models.REGISTRY` is trained,
evaluated and checked here automatically (that it beats popularity after a short run on the
synthetic set is `tests/test_evidence.py`, parametrised over the registry too).

- the same seed gives the same metrics;
- its state dict round-trips (same full-ranking scores);
- full-ranking evaluation works (ranks in 1..item_size for every user);
- its loss on a tiny batch equals a hand computation from its own scores, for the objectives where
  the loss is a function of the scoring representation (softmax CE over all items, BPR, BCE with one
  negative; a joint objective's first term is checked).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch

from bench.batches import training_samples
from bench.data import item_attributes, load_dataset
from bench.evaluate import evaluate, mean_pooled_train_outputs
from bench.modelio import build_model
from bench.presets import preset
from bench.results.codeversion import read_sidecar
from bench.spec import RunSpec
from bench.train import Progress, epoch_generators, to_batches, train_run
from models import REGISTRY, fast
from models.gsasrec import gbce, gbce_beta, sampled_softmax
from models.protocol import REGIMES, Batch, RecModel

pytestmark = pytest.mark.usefixtures("one_torch_thread")
DATA = "synthetic:users=200,items=60,intents=3,seed=2"
MODELS = sorted(REGISTRY)


@pytest.fixture(scope="module")
def data() -> Any:
    return load_dataset(DATA)


def run(name: str, epochs: int, seed: int = 1) -> dict[str, Any]:
    tc = {"epochs": epochs, "batch_size": 64, "patience": epochs}
    rec = train_run(RunSpec(name, DATA, seed, preset(DATA, name), tc, threads=1))
    assert rec["model_info"]["samples"] in REGIMES and rec["model_info"]["objective"]
    assert -1.0 <= rec["representation"]["mean_cosine"] <= 1.0  # the collapse measure, in every record
    return rec


def fresh(name: str, data: Any, seed: int = 0, **over: Any) -> RecModel:
    model = build_model(name, data.item_size, {**preset(DATA, name), **over}, data.n_users,
                        lambda: item_attributes(DATA, data))
    model.reset_parameters(torch.Generator().manual_seed(seed))
    return model


@pytest.mark.parametrize("name", MODELS)
def test_the_same_seed_gives_the_same_metrics(name: str) -> None:
    assert run(name, 1)["metrics"] == run(name, 1)["metrics"]


@pytest.mark.parametrize("name", MODELS)
def test_state_dict_round_trips_and_full_ranking_works(name: str, data: Any) -> None:
    model = fresh(name, data, seed=3)
    res = evaluate(model, data, "test")
    assert res.ranks.shape == (data.n_users,) and res.ranks.min() >= 1 and res.ranks.max() <= data.item_size
    assert set(res.metrics) >= {"NDCG@10", "NDCG@20", "HR@10", "HR@20"}
    copy = fresh(name, data, seed=4)
    copy.load_state_dict(model.state_dict())
    assert np.array_equal(evaluate(copy, data, "test").ranks, res.ranks)


@pytest.mark.parametrize("name", MODELS)
def test_the_last_position_alone_equals_the_whole_pass_there(name: str, data: Any) -> None:
    """`last_only=True` (what prefix-sample losses and scoring use; the last block may compute the
    final position alone) gives the whole pass's last output and the same gradients (eval mode)."""
    model = fresh(name, data, seed=5).eval()
    ids = torch.as_tensor(training_samples("prefixes", data, np.random.default_rng(0), {})["input_ids"][:16])
    params = [p for p in model.parameters() if p.requires_grad]
    last, whole = model(ids, last_only=True), model(ids)[:, -1:]  # (B, 1, D) each
    assert last.shape == whole.shape and torch.allclose(last, whole, atol=1e-5), name
    g_last = [zero_if_none(g, p) for g, p in zip(torch.autograd.grad(last.square().sum(), params,
                                                                       allow_unused=True), params, strict=True)]
    g_whole = [zero_if_none(g, p) for g, p in zip(torch.autograd.grad(whole.square().sum(), params,
                                                                        allow_unused=True), params, strict=True)]
    # float32 rounding of sums whose terms reach the largest gradient: tolerance on that scale
    scale = max(float(g.abs().max()) for g in g_whole)
    assert max(float((a - b).abs().max()) for a, b in zip(g_last, g_whole, strict=True)) <= 1e-6 * scale, name


def zero_if_none(grad: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(param) if grad is None else grad


def tiny_batch(model: RecModel, data: Any, rows: int = 6) -> Batch:
    rng, _ = epoch_generators(5, 0, torch.device("cpu"))
    samples = training_samples(model.samples, data, rng, model.sample_options())
    return to_batches(samples, rows, torch.device("cpu"))[0]


@torch.no_grad()
def hand_ce(model: RecModel, batch: Batch) -> float:
    """Softmax CE from the model's scores, in float64: the last position of each prefix, or every
    position with a target of a sequence (the masked ones under the Cloze task)."""
    w = model.item_weights().double()  # (I, D)
    if model.samples == "prefixes":
        h, t = model.user_repr(batch.input_ids, batch.users).double(), batch.target_pos  # (B, D), (B,)
    else:
        h, t = model(batch.input_ids).double(), batch.target_pos  # (B, L, D), (B, L)
        h, t = h[t > 0], t[t > 0]
    logp = torch.log_softmax(h @ w.T, dim=-1)
    return float(-logp.gather(1, t[:, None]).mean())


@torch.no_grad()
def hand_bce(model: RecModel, batch: Batch) -> float:
    """BCE with one negative at every position with a target (the ICLRec lineage's rec loss)."""
    h, w = model(batch.input_ids).double(), model.item_weights().double()  # (B, L, D), (I, D)
    real = batch.target_pos > 0
    pos = (h * w[batch.target_pos]).sum(-1)[real]
    neg = (h * w[batch.target_neg]).sum(-1)[real]
    return float((-torch.log(torch.sigmoid(pos)) - torch.log(1 - torch.sigmoid(neg))).mean())


@torch.no_grad()
def hand_bpr(model: RecModel, batch: Batch) -> float:
    u = model.user_repr(torch.empty(0), batch.users).double()  # (B, D)
    w = model.item_weights().double()
    diff = (u * w[batch.target_pos]).sum(-1) - (u * w[batch.target_neg]).sum(-1)
    return float(-torch.log(torch.sigmoid(diff)).mean())


HAND = {"ce-full": ("ce", hand_ce), "cloze-ce": ("ce", hand_ce), "bpr": ("bpr", hand_bpr),
        "bce-1neg": ("rec", hand_bce)}


@pytest.mark.parametrize("name", MODELS)
def test_loss_of_a_tiny_batch_equals_a_hand_computation(name: str, data: Any) -> None:
    model = fresh(name, data)
    base = model.objective.split("+")[0]
    if base not in HAND:
        pytest.skip(f"{name}: objective {model.objective!r} has no hand computation from the scores")
    term, hand = HAND[base]
    model.eval()  # no dropout: the loss is a function of the scores alone
    model.epoch_start(0, lambda: mean_pooled_train_outputs(model, data, torch.device("cpu")), 0)
    batch = tiny_batch(model, data)
    got = float(model.losses(batch)[term].detach())
    assert got == pytest.approx(hand(model, batch), rel=1e-5)


@pytest.mark.parametrize("regime", REGIMES)
def test_every_regime_builds_aligned_batches(regime: str, data: Any) -> None:
    rng = np.random.default_rng(0)
    options = {"cloze": {"mask_prob": 0.5}, "segments": {"mask_prob": 0.2}}.get(regime, {})
    s = training_samples(regime, data, rng, options)
    rows = {len(v) for v in s.values()}
    assert len(rows) == 1 and rows.pop() > 0
    assert s["users"].min() >= 0 and s["users"].max() < data.n_users
    if "target_pos" in s:
        assert s["target_pos"].max() < data.item_size


def test_prefixes_are_every_training_target_once(data: Any) -> None:
    s = training_samples("prefixes", data, np.random.default_rng(0), {"same_target": True})
    n = data.ends - 3 - data.starts
    assert len(s["users"]) == n.sum()
    i = int(np.flatnonzero(s["users"] == 0)[0])
    t = int((s["input_ids"][i] > 0).sum())  # this sample's prefix length
    assert list(s["input_ids"][i, -t:]) == list(data.flat[data.starts[0] : data.starts[0] + t])
    assert s["target_pos"][i] == data.flat[data.starts[0] + t]
    targets_of: dict[bytes, set[int]] = {}
    for row, target in zip(s["input_ids"], s["target_pos"], strict=True):
        targets_of.setdefault(row.tobytes(), set()).add(int(target))
    for row, target in zip(s["view_1"], s["target_pos"], strict=True):  # DuoRec's supervised positive
        assert int(target) in targets_of[row.tobytes()]


def test_cloze_masks_and_targets_agree(data: Any) -> None:
    s = training_samples("cloze", data, np.random.default_rng(0), {"mask_prob": 0.3})
    masked = s["input_ids"] == data.item_size - 1
    assert masked.any(1).all()
    assert np.array_equal(masked, s["target_pos"] > 0)


def test_cloze_copies_and_last_item_copies(data: Any) -> None:
    # FeiSun's training set: dupe_factor randomly masked copies of each sequence plus one copy whose
    # last item alone is masked, shuffled together
    s = training_samples("cloze", data, np.random.default_rng(0), {"mask_prob": 0.3, "copies": 3, "mask_last": True})
    assert np.array_equal(np.bincount(s["users"], minlength=data.n_users), np.full(data.n_users, 4))
    masked = s["input_ids"] == data.item_size - 1
    last_only = masked[:, -1] & (masked.sum(1) == 1)
    assert np.array_equal(masked, s["target_pos"] > 0) and s["users"][:data.n_users].std() > 0
    # every user has at least its one last-only copy; random copies rarely mask the last item alone
    assert np.array_equal(np.unique(s["users"][last_only]), np.arange(data.n_users))


def test_gbce_and_sampled_softmax_equal_hand_values() -> None:
    # one position, logits 0 for the positive and both negatives: sigmoid = 1/2 everywhere
    pos, neg = torch.zeros(1), torch.zeros(1, 2)
    beta = gbce_beta(2, 11, 0.75)  # alpha = 2/10: beta = 0.2 (0.75 (1 - 5) + 5) = 0.4
    assert beta == pytest.approx(0.4)
    assert float(gbce(pos, neg, beta)) == pytest.approx((0.4 * math.log(2) + 2 * math.log(2)) / 3)
    assert float(gbce(pos, neg, 1.0)) == pytest.approx(math.log(2))  # beta 1: plain BCE, log 2 per logit
    assert float(sampled_softmax(pos, neg)) == pytest.approx(math.log(3))
    # the reference's transformed logit log(1 / (sigmoid(s)^-beta - 1)) gives the same positive term
    s = torch.tensor([0.3, -1.2], dtype=torch.float64)
    z = torch.log(1 / (torch.sigmoid(s) ** -beta - 1))
    assert torch.allclose(-torch.nn.functional.logsigmoid(z), -beta * torch.nn.functional.logsigmoid(s))


class Killed(Exception):
    """Stands for a kill after a saved epoch."""


@pytest.mark.parametrize("name", MODELS)
def test_a_killed_pretraining_resumes_where_it_stopped_and_ends_as_if_never_killed(name: str, data: Any,
                                                                                   tmp_path: Any) -> None:
    stage = fresh(name, data).pretraining()
    if stage is None or stage.epochs < 2:
        pytest.skip(f"{name} has no pre-training stage of two or more epochs in the synthetic preset")
    tc = {"epochs": 1, "batch_size": 64, "patience": 1}
    spec = RunSpec(name, DATA, 1, preset(DATA, name), tc, threads=1)
    whole = train_run(spec)

    def kill(p: Progress, total: int) -> None:
        if p.pretrain_epoch == 1:
            raise Killed

    with pytest.raises(Killed):
        train_run(spec, tmp_path / "state.pt", on_pretrain=kill)
    side = read_sidecar(tmp_path / "state.pt")  # what `reproduce --dry-run` shows
    assert side and (side["epoch"], side["pretrain_epoch"], side["pretrain_epochs"]) == (0, 1, stage.epochs)
    done: list[int] = []
    resumed = train_run(spec, tmp_path / "state.pt", on_pretrain=lambda p, total: done.append(p.pretrain_epoch))
    assert done == list(range(2, stage.epochs + 1))  # the saved epoch is not run again
    curve = resumed["pretrain_curve"]
    assert len(curve) == stage.epochs and all(np.isfinite(v) for epoch in curve for v in epoch.values())
    assert curve == whole["pretrain_curve"] and resumed["metrics"] == whole["metrics"]
    assert resumed["timing"]["phase_total_s"]["pretraining"] > 0


@pytest.mark.parametrize("name", MODELS)
def test_losses_on_rows_of_similar_length_equal_the_whole_batchs(name: str, data: Any,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`fast.length_groups` (prefix samples and pre-training batches are mostly padding) changes
    no loss: the same values with every row in one group at full width (eval mode: no dropout)."""
    model = fresh(name, data).eval()
    model.epoch_start(0, lambda: mean_pooled_train_outputs(model, data, torch.device("cpu")), 0)  # intents
    stages = [(model.samples, model.sample_options(), model.losses)]
    pre = model.pretraining()
    if pre is not None:
        stages.append((pre.samples, pre.options, pre.losses))
    for regime, options, losses in stages:
        rng, _ = epoch_generators(1, 0, torch.device("cpu"))
        batch = to_batches(training_samples(regime, data, rng, options), 64, torch.device("cpu"))[0]
        model.generator = torch.Generator().manual_seed(3)  # sampled negatives: the same in both calls
        grouped = {k: float(v.detach()) for k, v in losses(batch).items()}
        with monkeypatch.context() as m:
            m.setattr(fast, "length_groups", lambda ids, groups=4: [(torch.arange(len(ids)), ids.shape[1])])
            model.generator = torch.Generator().manual_seed(3)
            whole = {k: float(v.detach()) for k, v in losses(batch).items()}
        assert grouped == pytest.approx(whole, rel=1e-5), regime


def test_segments_mask_a_segment_and_keep_it_apart(data: Any) -> None:
    s = training_samples("segments", data, np.random.default_rng(0), {"mask_prob": 0.2})
    mask_id = data.item_size - 1
    seg = s["view_1"] == mask_id
    long_rows = (s["target_pos"] > 0).sum(1) >= 2
    assert seg[long_rows].any(1).all()  # every sequence of two or more items has a masked segment
    assert np.array_equal(s["view_2"][seg], s["target_pos"][seg])  # the true segment, in place
    outside = (s["target_pos"] > 0) & ~seg & long_rows[:, None]
    assert (s["view_2"][outside] == mask_id).all()  # masks around it
    assert ((s["view_neg"] == mask_id) == (s["view_2"] == mask_id)).all()
    assert ((s["input_ids"] == mask_id) | (s["input_ids"] == s["target_pos"])).all()
