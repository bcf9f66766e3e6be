"""Strict recurrency baseline and its history index (kgsearch.dkgr.recurrency) on hand-made graphs."""

from __future__ import annotations

import math
import random

import pytest
import torch

from kgsearch.data import TemporalDataset
from kgsearch.dkgr.recurrency import RecurrencyIndex, evaluate_recurrency, recurrency_scores

pytestmark = pytest.mark.usefixtures("one_thread")

N, R, T = 4, 2, 6
TRAIN = [(0, 0, 1, 0), (0, 0, 2, 1), (0, 0, 1, 2), (1, 1, 3, 2)]
VALID = [(0, 0, 1, 3), (0, 0, 3, 3)]
TEST = [(0, 0, 2, 4), (0, 0, 1, 5), (0, 0, 3, 5)]


def dataset() -> TemporalDataset:
    quads = lambda rows: torch.tensor(rows, dtype=torch.long).reshape(-1, 4)  # noqa: E731
    return TemporalDataset(name="hand", entities=[f"e{i}" for i in range(N)], relations=["a", "b"],
                           times=torch.arange(T), train=quads(TRAIN), valid=quads(VALID), test=quads(TEST))


def index() -> RecurrencyIndex:
    return RecurrencyIndex.of_dataset(dataset())


def history(idx, anchor, rel, t) -> dict[int, tuple[int, int]]:
    """{answer: (last time, count)} of one query."""
    one = lambda v: torch.tensor([v])  # noqa: E731
    pairs = idx.lookup(one(anchor), one(rel), one(t))
    assert pairs.rows.tolist() == [0] * len(pairs.rows)
    return {o: (l, c) for o, l, c in zip(pairs.ents.tolist(), pairs.last.tolist(), pairs.count.tolist())}


def test_a_recurring_fact_has_its_last_earlier_time_and_count():
    idx = index()
    # (0, 0, 1) held at 0 and 2 (train) and 3 (valid); (0, 0, 2) at 1; (0, 0, 3) at 3
    assert history(idx, 0, 0, 3) == {1: (2, 2), 2: (1, 1)}
    assert history(idx, 0, 0, 4) == {1: (3, 3), 2: (1, 1), 3: (3, 1)}   # earlier valid days included
    assert history(idx, 0, 0, 1) == {1: (0, 1)}
    assert history(idx, 0, 0, 0) == {}                                  # nothing before the first day
    assert history(idx, 2, 0, 5) == {}                                  # a query never asked before


def test_neither_the_query_time_nor_the_future_leaks():
    idx = index()
    # at t = 3, (0, 0, 3) holds (valid, t = 3) and (0, 0, 2) holds again at 4: neither is history yet,
    # and (0, 0, 1)'s later occurrences (3, 5) change neither its last time nor its count
    assert 3 not in history(idx, 0, 0, 3)
    assert history(idx, 0, 0, 3)[2] == (1, 1) and history(idx, 0, 0, 3)[1] == (2, 2)
    # the score of an answer seen only at the query's time is 0 (log: -inf), like one never seen
    pairs = idx.lookup(torch.tensor([0]), torch.tensor([0]), torch.tensor([3]))
    for score in ("last", "sum"):
        scores = recurrency_scores(idx, pairs, torch.tensor([3]), 0.9, score)
        assert scores[0, 3] == float("-inf") and scores[0, 0] == float("-inf")
        assert scores[0, 1] > float("-inf") and scores[0, 2] > float("-inf")


def test_both_directions_are_indexed_with_inverse_relations():
    idx = index()
    assert history(idx, 1, 0 + R, 3) == {0: (2, 2)}      # (?, 0, 1) asked as (1, 0 + R, ?)
    assert history(idx, 3, 1 + R, 3) == {1: (2, 1)}      # (1, 1, 3) at 2 -> (3, 1 + R, 1)
    assert history(idx, 3, 0 + R, 4) == {0: (3, 1)}      # from the valid fact (0, 0, 3, 3)
    assert history(idx, 3, 1, 5) == {}                   # the inverse is not a forward fact


def test_score_is_lambda_to_the_time_since_last_seen():
    idx = index()
    t = torch.tensor([4])
    pairs = idx.lookup(torch.tensor([0]), torch.tensor([0]), t)
    for lam in (0.5, 0.9, 1.0):
        got = recurrency_scores(idx, pairs, t, lam).exp()[0]
        assert got.tolist() == pytest.approx([0.0, lam ** 1, lam ** 3, lam ** 1])
        # the paper's psi_Delta sums over every earlier occurrence: (0, 0, 1) held at 0, 2 and 3
        got = recurrency_scores(idx, pairs, t, lam, "sum").exp()[0]
        assert got.tolist() == pytest.approx([0.0, lam ** 4 + lam ** 2 + lam, lam ** 3, lam ** 1])
    # "last": any lambda < 1 ranks by recency alone; "sum" with lambda = 1 counts (1 above 3 here)
    assert recurrency_scores(idx, pairs, t, 1.0, "sum")[0].argmax() == 1
    # log scores never underflow to a tie with the unseen: 0.5^300 is 0 in float32, its log is not
    far = recurrency_scores(idx, pairs, torch.tensor([304]), 0.5)[0]
    assert far[1] == pytest.approx(-301 * math.log(2)) and far[1] > far[0]
    with pytest.raises(ValueError):
        recurrency_scores(idx, pairs, t, 0.0)
    with pytest.raises(ValueError):
        recurrency_scores(idx, pairs, t, 0.5, "max")


def test_lambda_changes_the_ranks_through_the_projects_evaluator():
    accs = evaluate_recurrency(dataset(), "test", [0.5, 1.0])
    # test queries (both directions, 6): ranks worked out by hand with ties as 1 + #greater + #equal/2
    #  (0,0,2,4): seen 1 (last 3), 2 (last 1), 3 (last 3). lambda 0.5: 1 and 3 above 2 -> rank 3;
    #             lambda 1: all three tie -> 1 + 2/2 = 2. No other true answer at 4.
    #  (0,0,1,5): seen 1 (3), 2 (4), 3 (3). lambda 0.5: 2 above, 3 ties -> raw 2.5; time-aware filter
    #             removes 3 (true at 5) -> 2. lambda 1: ties with 2 and 3 -> raw 2, filtered 1.5.
    #  (0,0,3,5): the mirror of the previous one: raw 2.5 / 2 (lambda 0.5), 2 / 1.5 (lambda 1).
    #  (2,0+R,0,4): (0,0,2) held at 1 -> only candidate: rank 1 for both lambdas.
    #  (1,0+R,0,5): (0,0,1) held at 0, 2, 3 -> rank 1.   (3,0+R,0,5): held at 3 -> rank 1.
    want = {0.5: ([3, 2.5, 2.5, 1, 1, 1], [3, 2, 2, 1, 1, 1]), 1.0: ([2, 2, 2, 1, 1, 1], [2, 1.5, 1.5, 1, 1, 1])}
    for lam, (raw, tf) in want.items():
        for group, ranks in (("raw", raw), ("tf", tf)):
            got = accs[lam][group].result()
            assert got["count"] == 2 * len(TEST)
            assert got["mrr"] == pytest.approx(sum(1 / r for r in ranks) / 6), (lam, group)
            assert got["hits@1"] == pytest.approx(sum(r <= 1 for r in ranks) / 6)
    # a query whose answer was never seen ties with every other unseen entity
    valid = evaluate_recurrency(dataset(), "valid", [0.9])[0.9]["raw"].result()
    # (0,0,1,3): seen 1 (2), 2 (1) -> rank 1; (0,0,3,3): 3 unseen, below 1 and 2, tie with 0 -> 3.5;
    # (1,R,0,3): rank 1; (3,R,0,3): nothing seen, 4-way tie -> 2.5
    assert valid["mrr"] == pytest.approx((1 + 1 / 3.5 + 1 + 1 / 2.5) / 4)


def test_lookup_matches_a_brute_force_scan():
    rng = random.Random(0)
    n, r, t = 7, 3, 12
    facts = sorted({(rng.randrange(n), rng.randrange(r), rng.randrange(n), rng.randrange(t)) for _ in range(120)})
    facts += [(1, 0, 2, x) for x in range(0, t, 2) if (1, 0, 2, x) not in facts]   # a long run for the scan
    idx = RecurrencyIndex.build(torch.tensor(facts), n, r, t)
    both = [(s, p, o, u) for s, p, o, u in facts] + [(o, p + r, s, u) for s, p, o, u in facts]
    queries = [(rng.randrange(n), rng.randrange(2 * r), rng.randrange(t + 1)) for _ in range(200)]
    a, q, u = (torch.tensor(col) for col in zip(*queries))
    pairs = idx.lookup(a, q, u)
    got = {(b, o): (l, c) for b, o, l, c, _ in zip(*(x.tolist() for x in pairs))}
    want = {}
    for b, (s, p, tq) in enumerate(queries):
        for o in range(n):
            times = {x for (s2, p2, o2, x) in both if (s2, p2, o2) == (s, p, o) and x < tq}
            if times:
                want[(b, o)] = (max(times), len(times))
    assert got == want
    assert pairs.rows.tolist() == sorted(pairs.rows.tolist())   # grouped by query
    for lam in (0.3, 0.9, 1.0):     # the scan's decayed sums against the definition
        scores = recurrency_scores(idx, pairs, u, lam, "sum").double().exp()
        for b, (s, p, tq) in enumerate(queries):
            for o in range(n):
                times = {x for (s2, p2, o2, x) in both if (s2, p2, o2) == (s, p, o) and x < tq}
                assert float(scores[b, o]) == pytest.approx(sum(lam ** (tq - x) for x in times), rel=1e-5)


def test_tables_round_trip():
    idx = index()
    again = RecurrencyIndex.from_tables(idx.tables())
    assert history(again, 0, 0, 4) == history(idx, 0, 0, 4) and again.nbytes == idx.nbytes > 0


def test_bench_script_prints_valid_lines_test_at_the_best_lambda_and_a_summary(tiny_temporal_dir, capsys):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "bench" / "recurrency_baseline.py"
    spec = importlib.util.spec_from_file_location("recurrency_baseline", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.main(["--dataset", str(tiny_temporal_dir), "--lambdas", "0.5,1"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(x.get("split"), x.get("score")) for x in lines] == [
        ("valid", "last"), ("valid", "last"), ("test", "last"),
        ("valid", "sum"), ("valid", "sum"), ("test", "sum"), (None, None)]
    assert all(x["count"] == 4 for x in lines[:-1])          # 2 facts per split, both directions
    assert {"tf_mrr", "raw_mrr", "tf_hits@10", "raw_hits@1"} <= set(lines[0])
    assert lines[-1]["best_score"] in ("last", "sum") and lines[-1]["peak_rss_mib"] > 0
