"""DKGR-DR's evaluation history (config `eval_history`, kgsearch/dkgr/multistep.py): ground truth (single-
step) unchanged, multi-step fed by the model's own top-k predictions and by no ground truth of the split's
earlier days, the copy head's index likewise, determinism and sharding, the config check, `--eval --set`."""

from __future__ import annotations

import pytest
import torch

from kgsearch.config import config_from_dict
from kgsearch.data import TemporalDataset
from kgsearch.dkgr.history import snapshot_of
from kgsearch.dkgr.multistep import PredictedAnswers, predicted_facts
from kgsearch.dkgr.recipe import DkgrConfig, DkgrRecipe
from kgsearch.dkgr.recurrency import RecurrencyIndex
from kgsearch.errors import KGSearchError
from kgsearch.evaluation import FilterIndex, both_directions, realistic_ranks

from contract import RecipeContract

N, R, T = 12, 3, 24
VALID, TEST = (14, 19), (19, 24)      # time ranges [lo, hi) of the two evaluated splits

pytestmark = pytest.mark.usefixtures("one_thread")


def rows() -> list[tuple[int, int, int, int]]:
    """Every even e has (e, t % 3, e + 1 + t % 3) at t, plus a seeded sprinkle of other facts."""
    gen = torch.Generator().manual_seed(0)
    out = [(e, t % R, (e + 1 + t % R) % N, t) for t in range(T) for e in range(0, N, 2)]
    rand, when = torch.randint(0, N, (60, 3), generator=gen).tolist(), torch.randint(0, T, (60,), generator=gen)
    out += [(s, r % R, o, int(t)) for (s, r, o), t in zip(rand, when) if s != o]
    return sorted(set(out))


def dataset(quads: torch.Tensor | None = None) -> TemporalDataset:
    quads = torch.tensor(rows()) if quads is None else quads
    split = lambda lo, hi: quads[(quads[:, 3] >= lo) & (quads[:, 3] < hi)]  # noqa: E731
    names = [f"Actor_{i}_(Country_{i % 3})" if i % 2 else f"Country_{i}" for i in range(N)]
    return TemporalDataset(name="multistep", entities=names, relations=["a", "b", "c"], times=torch.arange(T),
                           train=split(0, VALID[0]), valid=split(*VALID), test=split(*TEST))


def swap_answers(quads: torch.Tensor, days: range) -> torch.Tensor:
    """On each of `days`, the objects of the facts sharing a relation rotated by one: every fact changes
    (the periodic ones do) while the day's queries -- (s, r, ?) and (o, r + R, ?) -- stay the same multiset."""
    quads = quads.clone()
    for t in days:
        for r in range(R):
            at = ((quads[:, 3] == t) & (quads[:, 1] == r)).nonzero().flatten()
            quads[at, 2] = quads[at.roll(1), 2]
    return quads


def config(**overrides) -> DkgrConfig:
    base = dict(dim=16, decoder_channels=4, history_len=2, lr=0.01, epochs=1, precision="fp32",
                eval_batch_size=64, seed=3)
    cfg = DkgrConfig(**{**base, **overrides})
    cfg.validate()
    return cfg


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("KGSEARCH_CACHE", str(tmp_path / "cache"))


def make(ds=None, state=None, rank=0, world_size=1, **overrides) -> DkgrRecipe:
    ds = ds if ds is not None else dataset()
    cfg = config(**overrides)
    recipe = DkgrRecipe(cfg, ds, DkgrRecipe.prepare(cfg, ds), rank=rank, world_size=world_size)
    if state is not None:
        recipe.load_state_dict(state)
    return recipe


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[bool, dict]:
    """State dicts after one epoch, without and with the global-history head."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    states = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KGSEARCH_CACHE", str(tmp_path_factory.mktemp("cache")))
        for head in (False, True):
            recipe = make(global_history=head)
            recipe.train_epoch(1)
            states[head] = recipe.state_dict()
    torch.set_num_threads(threads)
    return states


def by_day(recipe, split: str) -> dict[int, dict[str, torch.Tensor]]:
    out: dict[int, dict[str, list]] = {}
    for t, ranks in recipe.day_ranks(split):
        for group, r in ranks.items():
            out.setdefault(t, {}).setdefault(group, []).append(r)
    return {t: {g: torch.cat(v) for g, v in groups.items()} for t, groups in out.items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------ ground truth


@pytest.mark.parametrize("head", [False, True])
def test_ground_truth_mode_is_single_step_with_the_true_history(trained, head):
    """The default ranks every day from the ground truth of the m snapshots before it (earlier days of the
    split included), the same numbers as a plain re-implementation; multi_step_topk is then ignored."""
    recipe = make(state=trained[head], global_history=head)
    assert recipe.config.eval_history == "ground_truth"
    model, ds = recipe.model, recipe.dataset
    model.eval()
    quads = torch.cat([ds.train, ds.valid, ds.test])
    anchor, rel, target = both_directions(quads[:, :3], R)
    time = quads[:, 3].repeat(2)
    filt = FilterIndex.build((time * N + anchor) * (2 * R) + rel, target)
    want = {}
    with torch.no_grad():
        e_static = model.static_embedding()
        for t, facts in recipe._snapshots["test"]:
            h, r, _ = model.encode(recipe.history.steps_for(t), e_static)
            a, q, b = both_directions(facts, R)
            tt = torch.full_like(a, t)
            scores = model.entity_scores(h, r, a, q, torch.tanh(h))
            if head:
                scores = model.global_head.log_probs(scores, a, q, tt)
            rows_, cols = filt.lookup((tt * N + a) * (2 * R) + q)
            want[t] = (realistic_ranks(scores, b), realistic_ranks(scores, b, rows_, cols))
    got = by_day(recipe, "test")
    assert sorted(got) == list(range(*TEST))
    for t, (raw, tf) in want.items():
        assert torch.allclose(got[t]["raw"], raw) and torch.allclose(got[t]["tf"], tf)
    plain = {k: v.to_tensor() for k, v in recipe.evaluate("test").items()}
    other = make(state=trained[head], global_history=head, multi_step_topk=3)
    assert same(plain, {k: v.to_tensor() for k, v in other.evaluate("test").items()})


# ---------------------------------------------------------------------------------------------- no ground truth


@pytest.mark.parametrize("head", [False, True])
def test_multi_step_ranks_do_not_see_the_split_s_earlier_ground_truth(trained, head):
    """Swapping the answers of test days 19-22 (their queries unchanged) leaves the multi-step ranks of day
    23 exactly as they were, and changes the ground-truth ones; day 19 is predicted from the same ground
    truth (train + valid) in both modes, and a changed valid day does reach multi-step test ranks."""
    base_quads = torch.tensor(rows())
    swapped = dataset(swap_answers(base_quads, range(TEST[0], TEST[1] - 1)))
    assert not torch.equal(swapped.test, dataset().test)
    last = TEST[1] - 1
    ranks = {}
    for mode in ("ground_truth", "multi_step"):
        for name, ds in (("true", dataset()), ("swapped", swapped)):
            ranks[mode, name] = by_day(make(ds, trained[head], global_history=head, eval_history=mode), "test")
    assert same(ranks["multi_step", "true"][last], ranks["multi_step", "swapped"][last])
    assert not same(ranks["ground_truth", "true"][last], ranks["ground_truth", "swapped"][last])
    # the history of the first test day is ground truth in both modes; later days differ between them
    assert same(ranks["multi_step", "true"][TEST[0]], ranks["ground_truth", "true"][TEST[0]])
    assert not same(ranks["multi_step", "true"][last], ranks["ground_truth", "true"][last])
    # earlier splits stay ground truth (RE-GCN): swapping the last valid day changes test day 19
    valid_swapped = dataset(swap_answers(base_quads, range(VALID[1] - 1, VALID[1])))
    got = by_day(make(valid_swapped, trained[head], global_history=head, eval_history="multi_step"), "test")
    assert not same(got[TEST[0]], ranks["multi_step", "true"][TEST[0]])


def test_the_copy_heads_multi_step_index_is_ground_truth_before_the_split_plus_predictions():
    """PredictedAnswers answers exactly as an index built from the facts before the split's first day and
    the predicted facts (at their days) would: the split's own ground truth never enters."""
    ds = dataset()
    quads = torch.cat([ds.train, ds.valid, ds.test])
    start = TEST[0]
    index = PredictedAnswers(RecurrencyIndex.of_dataset(ds), start)
    gen = torch.Generator().manual_seed(5)
    predicted = []
    for t in range(start, TEST[1] - 1):
        facts = torch.randint(0, N, (9, 3), generator=gen) % torch.tensor([N, R, N])
        index.add(t, facts)
        predicted.append(torch.cat([facts, torch.full((9, 1), t)], 1))
    want = RecurrencyIndex.build(torch.cat([quads[quads[:, 3] < start], *predicted]), N, R, T)
    anchor = torch.arange(N).repeat_interleave(2 * R).repeat(T - start + 1)
    rel = torch.arange(2 * R).repeat(N).repeat(T - start + 1)
    time = torch.arange(start - 1, T).repeat_interleave(2 * N * R)
    got, ref = index.lookup(anchor, rel, time), want.lookup(anchor, rel, time)
    for field in ("rows", "ents", "last", "count"):
        assert torch.equal(getattr(got, field), getattr(ref, field)), field
    truth = RecurrencyIndex.of_dataset(ds).lookup(anchor, rel, time)   # what single-step would see
    assert len(truth.rows) != len(ref.rows) or not torch.equal(truth.ents, ref.ents)


# ------------------------------------------------------------------------------------------------ the top-k


def test_predicted_facts_are_each_querys_top_k_with_inverse_queries_turned_back():
    anchor, rel = torch.tensor([0, 5, 2]), torch.tensor([1, 1 + R, 2 + R])
    scores = torch.zeros(3, N)
    scores[0, [7, 3, 9]] = torch.tensor([3.0, 2.0, 1.0])
    scores[1, [4, 8]] = torch.tensor([1.0, 5.0])
    scores[2, [11, 6]] = torch.tensor([4.0, 2.0])
    got = {tuple(f) for f in predicted_facts(anchor, rel, scores, 2, R).tolist()}
    assert got == {(0, 1, 7), (0, 1, 3), (8, 1, 5), (4, 1, 5), (11, 2, 2), (6, 2, 2)}
    assert predicted_facts(anchor, rel, scores, 50, R).shape == (3 * N, 3)   # k capped at N


def _edges(snap) -> set[tuple[int, int, int]]:
    return {(s, r, o) for s, r, o in zip(snap.src.tolist(), snap.rel.tolist(), snap.dst.tolist()) if r < R}


@pytest.mark.parametrize("k", [1, 2])
def test_each_predicted_day_is_the_top_k_of_its_queries(monkeypatch, k):
    """With scores fixed by hand (entity anchor + 1 best, anchor + 2 next; anchor - 1, anchor - 2 for an
    inverse query), the window of every later test day ends in the distinct top-k facts of the earlier days'
    queries (a fact predicted from both directions enters once), and holds no true day."""
    recipe = make(eval_history="multi_step", multi_step_topk=k, global_history=False)  # the decoder ranks alone
    model = recipe.model

    def fixed(h, r, anchors, rels, ent=None):
        sign = torch.where(rels < R, 1, -1)[:, None]
        return -((torch.arange(N)[None, :] - anchors[:, None] - sign) * sign % N).float()

    windows = []
    monkeypatch.setattr(model, "entity_scores", fixed)
    encode = model.encode
    monkeypatch.setattr(model, "encode", lambda steps, e=None: windows.append(list(steps)) or encode(steps, e))
    recipe.evaluate("test")
    days = recipe._snapshots["test"]
    assert len(windows) == len(days)
    expect, duplicates = [], 0
    for t, facts in days:
        a, q, _ = both_directions(facts, R)
        out = []
        for x, y in zip(a.tolist(), q.tolist()):
            for j in range(k):
                out.append((x, y, (x + 1 + j) % N) if y < R else ((x - 1 - j) % N, y - R, x))
        expect.append(set(out))
        duplicates += len(out) - len(set(out))
    assert duplicates > 0     # (e, 0, e + 1) is predicted from both of its queries
    truth = recipe.history.steps_for(days[0][0])
    assert [id(s) for s in windows[0]] == [id(s) for s in truth]        # day 1: ground truth before the split
    assert [_edges(s) for s in windows[1]] == [_edges(truth[-1]), expect[0]]
    for i in range(2, len(days)):
        assert [_edges(s) for s in windows[i]] == [expect[i - 2], expect[i - 1]]
    for window in windows[1:]:
        n_forward = int((window[-1].rel < R).sum())
        assert n_forward == len(_edges(window[-1]))               # a set: no fact twice
    true_days = [_edges(recipe.history.snapshot(recipe.history.before[t])) for t, _ in days]
    assert not any(_edges(s) in true_days for s in windows[-1])
    # a predicted snapshot is built as build_history builds a day: the true facts give the true tensors
    t, facts = days[1]
    snap, ref = snapshot_of(facts, N, R), recipe.history.snapshot(recipe.history.before[t])
    for field in ("src", "dst", "dst_pos", "rel", "norm", "nodes", "pair_rel", "pair_ent"):
        assert torch.equal(getattr(snap, field), getattr(ref, field)), field


def test_top_k_zero_keeps_the_last_true_days_before_the_split(monkeypatch):
    recipe = make(eval_history="multi_step", multi_step_topk=0)
    windows = []
    encode = recipe.model.encode
    monkeypatch.setattr(recipe.model, "encode",
                        lambda steps, e=None: windows.append([id(s) for s in steps]) or encode(steps, e))
    recipe.evaluate("valid")
    first = [id(s) for s in recipe.history.steps_for(VALID[0])]
    assert windows == [first] * (VALID[1] - VALID[0])


# ------------------------------------------------------------------------------------------------ determinism


@pytest.mark.parametrize("head", [False, True])
def test_multi_step_is_deterministic_and_shards_add_up(trained, head):
    recipe = make(state=trained[head], global_history=head, eval_history="multi_step")
    first = {k: v.to_tensor() for k, v in recipe.evaluate("valid").items()}
    again = {k: v.to_tensor() for k, v in recipe.evaluate("valid").items()}
    fresh = {k: v.to_tensor() for k, v in make(state=trained[head], global_history=head,
                                               eval_history="multi_step").evaluate("valid").items()}
    assert same(first, again) and same(first, fresh)
    assert int(first["tf"][0]) == 2 * len(recipe.dataset.valid)
    parts = [make(state=trained[head], global_history=head, eval_history="multi_step", rank=r, world_size=2)
             for r in (0, 1)]
    merged = parts[0].evaluate("valid")["tf"].merge(parts[1].evaluate("valid")["tf"])
    assert torch.allclose(merged.to_tensor(), first["tf"])


# ---------------------------------------------------------------------------------------------- config and CLI


def test_config_errors_name_the_keys():
    with pytest.raises(KGSearchError, match="key 'eval_history'"):
        config_from_dict(DkgrConfig, {"eval_history": "predicted"}, source="run.yaml")
    with pytest.raises(KGSearchError, match="'multi_step_topk' must be >= 0"):
        config_from_dict(DkgrConfig, {"multi_step_topk": -1}, source="run.yaml")
    with pytest.raises(ValueError, match="key 'eval_history' must be 'ground_truth' or 'multi_step'"):
        DkgrConfig(eval_history="multistep").validate()
    assert config_from_dict(DkgrConfig, {}, source="run.yaml").eval_history == "ground_truth"


def test_eval_of_a_checkpoint_takes_set_overrides(make_dataset_dir, tmp_path, capsys):
    from kgsearch.train import main

    quads = torch.tensor(rows())
    files = {"entity2id.txt": "".join(f"E{i}\t{i}\n" for i in range(N)),
             "relation2id.txt": "".join(f"R{i}\t{i}\n" for i in range(R))}
    for name, (lo, hi) in (("train", (0, VALID[0])), ("valid", VALID), ("test", TEST)):
        part = quads[(quads[:, 3] >= lo) & (quads[:, 3] < hi)].tolist()
        files[f"{name}.txt"] = "".join("\t".join(map(str, q)) + "\n" for q in part)
    folder = make_dataset_dir(files, name="multistep")
    run = tmp_path / "run.yaml"
    run.write_text(f"model: dkgr\ndataset: {folder}\nparams:\n  dim: 8\n  decoder_channels: 4\n"
                   "  history_len: 2\n  epochs: 1\n  precision: fp32\n", encoding="utf-8")
    main([str(run), "--out", str(tmp_path / "out")])
    capsys.readouterr()
    best = str(tmp_path / "out" / "best.pt")
    printed = {}
    for mode in ("ground_truth", "multi_step"):
        main(["--eval", best, "--set", f"params.eval_history={mode}"])
        printed[mode] = capsys.readouterr().out
    main(["--eval", best])
    assert capsys.readouterr().out == printed["ground_truth"]
    assert "test_tf_mrr" in printed["multi_step"] and printed["multi_step"] != printed["ground_truth"]
    with pytest.raises(SystemExit):
        main(["--eval", best, "--set", "params.eval_history=bogus"])
    assert "--set params.eval_history=bogus: params.eval_history" in capsys.readouterr().err


class TestDkgrMultiStepContract(RecipeContract):
    recipe = "dkgr"

    def make_dataset(self):
        return dataset()

    def params(self):
        return dict(dim=16, decoder_channels=4, history_len=2, lr=0.01, epochs=2, precision="fp32",
                    eval_batch_size=7, seed=3, global_history=True, eval_history="multi_step",
                    multi_step_topk=2)
