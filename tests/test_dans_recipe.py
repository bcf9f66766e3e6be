"""DansRecipe end to end on a tiny periodic graph: config checks, caching, ablations, determinism, DDP-readiness."""

from __future__ import annotations

import copy

import dataclasses
import gc

import pytest
import torch

from kgsearch.cache import cache_dir
from kgsearch.config import config_from_dict
from kgsearch.dans import model as dans_model
from kgsearch.dans import pretrain as pretrain_mod
from kgsearch.dans import recipe as recipe_mod
from kgsearch.dans.margins import softmax_loss
from kgsearch.dans.recipe import DansConfig, DansRecipe
from kgsearch.data import StaticDataset
from kgsearch.errors import KGSearchError
from kgsearch.evaluation import RankAccumulator
from kgsearch.recipe import get_recipe

from contract import RecipeContract

N = 12


def periodic_dataset() -> StaticDataset:
    """r0: i -> i+1, r1: i -> i+3 (mod 12); valid/test hold a few held-out r1 edges."""
    r0 = [[i, 0, (i + 1) % N] for i in range(N)]
    r1 = [[i, 1, (i + 3) % N] for i in range(N)]
    train, valid, test = r0 + r1[:8], r1[8:10], r1[10:]
    return StaticDataset("periodic", [f"e{i}" for i in range(N)], ["r0", "r1"],
                         torch.tensor(train), torch.tensor(valid), torch.tensor(test))


TINY = dict(epochs=4, eval_every=2, dim=8, batch_size=16, negatives=4, lr=0.02, gamma=4.0, diffusion_steps=20,
            sampling_steps=4, denoiser_hidden=16, time_dim=8, gen_fraction=0.5, gen_negatives=2,
            num_clusters=3, pretrain_dim=4, pretrain_epochs=2, pretrain_batch_size=16, pretrain_negatives=4,
            dam_hidden=8, dam_epochs=20)


def make_config(**overrides) -> DansConfig:
    return config_from_dict(DansConfig, {**TINY, **overrides}, "test")


@pytest.fixture(autouse=True)
def _one_thread_and_private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGSEARCH_CACHE", str(tmp_path / "cache"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: extra threads only add contention on a shared box
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data():
    return periodic_dataset()


@pytest.fixture(scope="module")
def prepared(data, tmp_path_factory):
    import os

    old = os.environ.get("KGSEARCH_CACHE")
    os.environ["KGSEARCH_CACHE"] = str(tmp_path_factory.mktemp("prep_cache"))
    try:
        return DansRecipe.prepare(make_config(), data)
    finally:
        if old is None:
            os.environ.pop("KGSEARCH_CACHE")
        else:
            os.environ["KGSEARCH_CACHE"] = old


def test_registry_and_config_validation():
    assert get_recipe("dans") is DansRecipe
    with pytest.raises(KGSearchError, match=r"run.yaml: params: need beta_low <= beta_global"):
        config_from_dict(DansConfig, {"beta_low": 0.5, "beta_global": 0.1}, "run.yaml: params")
    with pytest.raises(KGSearchError, match="beta_init must be > 0"):
        config_from_dict(DansConfig, {"beta_init": 0.0}, "x")
    with pytest.raises(KGSearchError, match="diffusion_steps"):
        config_from_dict(DansConfig, {"diffusion_steps": 10}, "x")
    with pytest.raises(KGSearchError, match="scorer must be one of"):
        config_from_dict(DansConfig, {"scorer": "quate"}, "x")
    with pytest.raises(KGSearchError, match="curriculum_zeta"):
        config_from_dict(DansConfig, {"curriculum_zeta": 0.0}, "x")
    with pytest.raises(KGSearchError, match="score_precision 'bf16' applies to .* complex_n3 only"):
        config_from_dict(DansConfig, {"scorer": "rotate", "score_precision": "bf16"}, "x")
    with pytest.raises(KGSearchError, match="unknown key 'betaa_low'"):
        config_from_dict(DansConfig, {"betaa_low": 0.1}, "x")
    fields = dataclasses.fields(DansConfig)
    assert all(f.default is not dataclasses.MISSING for f in fields)


def test_prepare_contents_and_cache(data, prepared, monkeypatch):
    assert prepared["dans"] is True
    assert prepared["difficulty"].shape == (N,)
    assert ((prepared["difficulty"] > 0) & (prepared["difficulty"] < 1)).all()
    assert prepared["cluster_labels"].shape == (N,) and int(prepared["cluster_labels"].max()) < 3
    assert prepared["structural"].shape == (N, 6)
    assert prepared["entity_embeddings"].shape == (N, 8)  # pretrain_dim 4, RotatE -> 8 reals
    # Second call hits the on-disk cache: the training inside pre-training does not run again...
    first = DansRecipe.prepare(make_config(), data)
    monkeypatch.setattr(pretrain_mod, "train_random_negatives",
                        lambda *a, **k: pytest.fail("pre-training ran although its result is cached"))
    again = DansRecipe.prepare(make_config(), data)
    assert torch.equal(first["difficulty"], again["difficulty"])
    assert any((cache_dir() / "dans_pretrain").iterdir())
    # ...while a different pre-training setting is a different key and trains again.
    with pytest.raises(pytest.fail.Exception, match="pre-training ran"):
        DansRecipe.prepare(make_config(pretrain_epochs=3), data)


def test_preparation_is_the_same_whatever_the_thread_count(monkeypatch):
    # A sweep driver prepares with every core, a replay with --threads 1: both must see the same ζ and types.
    from kgsearch.data import load

    monkeypatch.setenv("KGSEARCH_NO_CACHE", "1")
    umls = load("umls")  # large enough batches ([512, 64, 128]) that torch splits their reductions by thread
    cfg = make_config(pretrain_dim=64, pretrain_epochs=2, pretrain_batch_size=512, pretrain_negatives=64,
                      dam_hidden=64, dam_epochs=50)
    out = {}
    for threads in (1, 2):
        torch.set_num_threads(threads)
        out[threads] = DansRecipe.prepare(cfg, umls)
    for key in ("entity_embeddings", "difficulty", "difficulty_target", "cluster_labels"):
        assert torch.equal(out[1][key], out[2][key]), key


def test_baseline_skips_preparation(data, monkeypatch):
    monkeypatch.setattr(recipe_mod, "pretrain", lambda *a, **k: pytest.fail("baseline must not pre-train"))
    cfg = make_config(dans=False)
    recipe = DansRecipe(cfg, data, DansRecipe.prepare(cfg, data))
    assert recipe.model.denoiser is None
    stats = recipe.train_epoch(1)
    assert stats["loss_kgc1"] == 0 and stats["loss_diff"] == 0 and stats["loss"] == stats["loss_kgc2"] > 0


def test_loss_decreases_and_metrics_are_sane(data, prepared):
    recipe = DansRecipe(make_config(epochs=30), data, prepared)
    first = recipe.train_epoch(1)
    for epoch in range(2, 31):
        last = recipe.train_epoch(epoch)
    assert last["loss"] < first["loss"]
    assert last["loss_diff"] < first["loss_diff"]
    assert first["loss_kgc1"] > 0
    result = recipe.evaluate("valid")
    assert set(result) == {""} and isinstance(result[""], RankAccumulator)
    metrics = result[""].result()
    assert metrics["count"] == 4  # 2 triples x 2 directions
    untrained = DansRecipe(make_config(), data, prepared).evaluate("valid")[""].result()
    assert metrics["mrr"] > untrained["mrr"]  # 30 epochs on a periodic graph learn something


def test_seeded_runs_are_identical_down_to_the_weights(data, prepared):
    a, b = (DansRecipe(make_config(), data, prepared) for _ in range(2))
    assert a.train_epoch(1) == b.train_epoch(1)
    for (name, pa), pb in zip(a.model.state_dict().items(), b.model.state_dict().values()):
        assert torch.equal(pa, pb), name


@pytest.mark.parametrize("scorer", ["rotate", "nbfnet"])
def test_a_run_resumed_from_a_checkpoint_equals_the_uninterrupted_run(data, prepared, scorer):
    """Every epoch's randomness (shuffling, noise, the GNN's dropout) is seeded by seed and epoch, so epoch 2
    after loading epoch 1's state is epoch 2 of the straight run: what the sweep's re-training relies on
    when it continues a stopped search trial (kgsearch.sweep.retrain_plan)."""
    extra = {"scorer": "nbfnet", "layers": 2, "gnn_dropout": 0.3} if scorer == "nbfnet" else {}
    straight = DansRecipe(make_config(**extra), data, prepared)
    straight.train_epoch(1)
    state = copy.deepcopy(straight.state_dict())
    torch.manual_seed(123)  # whatever the global generator holds when the run resumes
    straight.train_epoch(2)
    resumed = DansRecipe(make_config(**extra), data, prepared)
    resumed.load_state_dict(state)
    resumed.train_epoch(2)
    for (name, pa), pb in zip(straight.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(pa, pb), name


def test_one_forward_gives_every_parameter_a_gradient(data, prepared):
    recipe = DansRecipe(make_config(), data, prepared)
    q = recipe.queries[:10]
    out = recipe.forward_model(q[:, 0], q[:, 1], q[:, 2], tau=0.5, generator=recipe.noise)
    out["loss"].backward()
    missing = [n for n, p in recipe.model.named_parameters() if p.grad is None]
    assert not missing  # DDP works without find_unused_parameters


def test_ablation_switches(data, prepared):
    full = DansRecipe(make_config(), data, prepared).model
    target = torch.arange(N)
    # DFS: per-entity schedules differ with ζ; w/o DFS every entity shares one schedule.
    abar = full._alpha_bar(target)
    hardest, easiest = prepared["difficulty"].argmax(), prepared["difficulty"].argmin()
    assert (abar[hardest, 1:] < abar[easiest, 1:]).all()  # harder entity: more noise (Eq. 2)
    no_dfs = DansRecipe(make_config(dfs=False), data, prepared).model._alpha_bar(target)
    assert torch.allclose(no_dfs, no_dfs[:1].expand_as(no_dfs))
    # matched: w/o DFS removes the adaptation, not noise -- the same mean ᾱ_T over the entities
    assert no_dfs[:, -1].mean() == pytest.approx(float(abar[:, -1].mean()), rel=1e-4)
    # CCD: the condition loses x_type and x_nbr (2 entity vectors).
    no_ccd = DansRecipe(make_config(ccd=False), data, prepared).model
    ent = full.scorer.entity_dim
    assert full.denoiser.in_cond.in_features - no_ccd.denoiser.in_cond.in_features == 2 * ent
    # DTM: curriculum weights move with τ; w/o DTM they stay equal (and the margin stays γ_base).
    probs, weights = full.band_weights(1.0)
    assert not torch.allclose(probs, torch.full((4,), 0.25)) and torch.equal(probs, weights)
    no_dtm = DansRecipe(make_config(dtm=False), data, prepared).model
    probs, weights = no_dtm.band_weights(1.0)
    assert torch.allclose(probs, torch.full((4,), 0.25))
    # matched: each uniform draw weighs what a DTM draw weighs on average over the run (Σ_k w_k²)
    cfg = make_config()
    run_mean = sum(float(full.band_weights(e / cfg.epochs)[0].square().sum()) for e in range(1, cfg.epochs + 1))
    assert torch.allclose(weights, torch.full((4,), run_mean / cfg.epochs)) and weights[0] > 0.25
    # Every variant still trains.
    for model in (no_ccd, no_dtm):
        out = model(torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([1, 0]), tau=1.0)
        assert torch.isfinite(out["loss"]) and out["kgc1"] > 0


def test_dtm_off_uses_the_fixed_margin(data, prepared, monkeypatch):
    seen = {}

    def spy(pos, gen, kappa, weights, tau, gamma_base, beta_m):
        seen.update(weights=weights, beta_m=beta_m)
        return pos.sum() * 0

    monkeypatch.setattr("kgsearch.dans.model.kgc1_loss", spy)
    model = DansRecipe(make_config(dtm=False, margin_increment=0.7), data, prepared).model
    model(torch.tensor([0, 1]), torch.tensor([0, 2]), torch.tensor([1, 0]), tau=1.0)
    assert seen["beta_m"] == 0.0 and torch.allclose(seen["weights"], torch.full((4,), model.uniform_weight))


def test_changed_cluster_count_recomputes_types(data, prepared):
    recipe = DansRecipe(make_config(num_clusters=2), data, prepared)
    assert recipe.model.num_clusters == 2 and int(recipe.model.labels.max()) <= 1


def test_generated_negatives_come_from_the_drawn_band_and_are_detached(data, prepared, monkeypatch):
    model = DansRecipe(make_config(gen_fraction=1.0, gen_negatives=2), data, prepared).model
    n = 6

    def marked_bands(denoiser, x0, abar, cond, plan, generator=None, step="ddpm"):  # band k holds the value k everywhere
        return torch.arange(4, dtype=x0.dtype).view(4, 1, 1).expand(4, *x0.shape).clone()

    monkeypatch.setattr(dans_model, "reverse_chain", marked_bands)
    anchor, rel, target = torch.arange(n) % N, torch.zeros(n, dtype=torch.long), (torch.arange(n) + 1) % N
    _, generated, kappa, _ = model._generate(anchor, rel, target, tau=1.0, generator=torch.Generator().manual_seed(0))
    mean, std = dans_model.column_stats(model.scorer.entity.detach())
    expected = kappa.view(-1, 1, 1).to(std.dtype) * std + mean  # band κ, mapped back to embedding space
    assert torch.allclose(generated, expected.expand_as(generated))
    assert len(set(kappa.tolist())) > 1  # late in training (τ = 1) several bands are drawn
    assert not generated.requires_grad  # negatives carry no gradient into the scorer or the denoiser


def test_the_neighbour_condition_leaves_out_the_answer(data, prepared):
    model = DansRecipe(make_config(), data, prepared).model
    entity = model.scorer.entity.detach()
    mean, std = dans_model.column_stats(entity)
    anchor, target = torch.tensor([0]), torch.tensor([1])  # (0, r0, 1) is a training fact
    cond = model._condition(anchor, torch.tensor([0]), target, mean, std)
    ent = model.scorer.entity_dim
    x_nbr = cond[0, -ent:] * std + mean
    nbrs = model.cols[model.rowptr[0]:model.rowptr[1]].tolist()
    assert 1 in nbrs
    others = [e for e in nbrs if e != 1]
    assert torch.allclose(x_nbr, entity[others].mean(0), atol=1e-5)


def test_a_degree_one_anchor_gets_the_fill_value():
    from kgsearch.dans.graph import neighbour_csr, neighbour_keys, neighbour_mean

    train = torch.tensor([[0, 0, 1], [1, 0, 2], [2, 0, 3]])  # 0 has one neighbour: 1
    rowptr, cols = neighbour_csr(train, 4)
    emb, fill = torch.randn(4, 3), torch.full((3,), 7.0)
    out = neighbour_mean(emb, torch.tensor([0, 1]), rowptr, cols, fill=fill, exclude=torch.tensor([1, 2]),
                         keys=neighbour_keys(rowptr, cols))
    assert torch.equal(out[0], fill)  # its only neighbour is the answer: nothing left to average
    assert torch.allclose(out[1], emb[0])  # 1's neighbours are 0 and 2; 2 is the answer


@pytest.mark.parametrize("rows, later_rows_count", [("generated", False), ("all", True)])
def test_diffusion_rows_says_which_rows_train_the_denoiser(data, prepared, rows, later_rows_count):
    """With `diffusion_rows: generated` L_Diff is taken on the first gen_fraction of the batch only, so
    changing the queries behind them leaves it unchanged; with `all` it does not."""
    model = DansRecipe(make_config(gen_fraction=0.5, diffusion_rows=rows), data, prepared).model
    anchor, rel, target = torch.arange(8) % N, torch.zeros(8, dtype=torch.long), (torch.arange(8) + 1) % N
    moved = target.clone()
    moved[4:] = (moved[4:] + 5) % N  # rows 4..7 lie beyond the generated half

    def diff(t):
        return model._generate(anchor, rel, t, tau=0.5, generator=torch.Generator().manual_seed(0))[0]

    assert torch.equal(diff(target), diff(target))  # seeded: the same call gives the same loss
    assert (not torch.equal(diff(target), diff(moved))) == later_rows_count


def test_a_bf16_training_score_matmul_rounds_the_loss_only_and_leaves_evaluation_fp32(data):
    losses, evaluated = {}, {}
    anchor, rel, target = torch.arange(8) % N, torch.zeros(8, dtype=torch.long), (torch.arange(8) + 1) % N
    for precision in ("fp32", "bf16"):
        recipe = DansRecipe(make_config(scorer="complex_n3", dans=False, dim=16, init_scale=1.0,
                                        score_precision=precision), data, None)
        losses[precision] = float(recipe.model(anchor, rel, target)["loss"])
        with torch.no_grad():
            evaluated[precision] = recipe.model.scorer.score_all(anchor, rel)
    assert losses["bf16"] != losses["fp32"]  # the training matmul did run in bf16 ...
    assert abs(losses["bf16"] - losses["fp32"]) < 1e-2 * abs(losses["fp32"])  # ... at bf16's rounding
    assert evaluated["bf16"].dtype == torch.float32 and torch.equal(evaluated["bf16"], evaluated["fp32"])


def test_the_softmax_base_scores_generated_rows_apart_with_the_loss_of_one_logit_matrix(data):
    """_softmax_forward takes the rows with generated negatives and the rest as two logit matrices (speed);
    its losses must be those of softmax_loss over one [B, N] matrix with the same generated candidates."""
    model = DansRecipe(make_config(scorer="complex_n3", dim=16, init_scale=1.0), data, None).model
    anchor, rel, target = torch.arange(8) % N, torch.arange(8) % 4, (torch.arange(8) + 3) % N
    out = model(anchor, rel, target, tau=0.5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        query = model.scorer.query(anchor, rel)
        diff, generated, kappa, weights = model._generate(anchor, rel, target, 0.5, torch.Generator().manual_seed(0))
        logits = model.scorer.similarity_all(query)
        gen_logits = -model.scorer.match(query[:len(kappa)].unsqueeze(1), generated)
        mixed = softmax_loss(logits, target, gen_logits, kappa, weights, 0.5, model.config.margin_increment,
                             model.config.eta)
    assert 0 < len(kappa) < len(target)                  # both parts are there (gen_fraction 0.5)
    assert float(out["kgc1"]) == pytest.approx(float(mixed), rel=1e-6)
    assert float(out["kgc2"]) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, target)), rel=1e-6)
    assert float(out["diff"]) == pytest.approx(float(diff), rel=1e-6)


class TestDansContract(RecipeContract):
    recipe = "dans"

    def make_dataset(self):
        return periodic_dataset()

    def params(self):
        return dict(TINY)
