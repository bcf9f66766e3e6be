"""Strict recurrency baseline (Gastinger et al. 2024, "History repeats itself"): the floor of a
temporal benchmark, measured with DKGR-DR's evaluator so the numbers compare directly.

    python bench/recurrency_baseline.py --dataset icews14 --threads 1
    python bench/recurrency_baseline.py --dataset icews18 --data-root ../shared/datasets --threads 1
    python bench/recurrency_baseline.py --dataset icews05-15 --data-root ../shared/datasets --threads 1

A query (s, r, ?, t) scores each entity o from the earlier times at which (s, r, o) held (train, and
for valid/test queries the earlier valid/test days too: single-step, ground-truth history, as RE-GCN
and TiRGN evaluate), 0 if never (kgsearch.dkgr.recurrency):

* `--score last`: lambda^(t - t_last), t_last the latest such time (issue 15's strict score; every
  lambda < 1 ranks alike, by recency; lambda = 1 ties all earlier answers);
* `--score sum`: sum of lambda^(t - t_i) over all such times, the paper's psi_Delta (its code's
  2^(lmbda (t_i - t)), lmbda = -log2 lambda); lambda = 1 is the count of earlier occurrences.

Both directions (head queries as (o, r + R, ?)); time-aware filtered ("tf") and raw ranks, ties as
1 + #greater + #equal / 2 (kgsearch.evaluation). Time differences count timestamps (time indices).

Prints one JSON line per (score, lambda) on valid, then per score the test metrics of its lambda with
the best validation tf MRR, then a summary: the best (score, lambda) on valid, seconds (CPU and wall;
index build apart), index size and peak RSS. `--test-all` adds the test line of every lambda.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

import torch

from kgsearch.allocator import restart_with_allocator_env, tune_allocator
from kgsearch.data import load
from kgsearch.dkgr.recurrency import RecurrencyIndex, evaluate_recurrency
from kgsearch.errors import cli_entry

DEFAULT_LAMBDAS = "0.5,0.9,0.99,0.999,1"


def _metrics(accs: dict) -> dict:
    out = {}
    for group in ("tf", "raw"):
        res = accs[group].result()
        out.update({f"{group}_{k}": round(100 * v, 2) for k, v in res.items() if k != "count"})
        out["count"] = res["count"]
    return out


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="icews14")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--lambdas", default=DEFAULT_LAMBDAS, help="comma-separated, each in (0, 1]")
    parser.add_argument("--batch-size", type=int, default=1024, help="queries scored at once (memory B x N)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--score", choices=["last", "sum", "both"], default="both")
    parser.add_argument("--test-all", action="store_true", help="also print the test metrics of every lambda")
    args = parser.parse_args(argv)
    tune_allocator()  # kgsearch/allocator.py: page faults otherwise cost up to a third of an epoch
    torch.set_num_threads(args.threads)
    lambdas = [float(x) for x in args.lambdas.split(",") if x.strip()]

    dataset = load(args.dataset, data_root=args.data_root)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    index = RecurrencyIndex.of_dataset(dataset)
    build_cpu = time.process_time() - cpu0

    scores = ["last", "sum"] if args.score == "both" else [args.score]
    best = {}
    for score in scores:
        valid = evaluate_recurrency(dataset, "valid", lambdas, index, args.batch_size, score)
        for lam in lambdas:
            print(json.dumps({"dataset": dataset.name, "split": "valid", "score": score, "lambda": lam,
                              **_metrics(valid[lam])}), flush=True)
        lam_best = max(lambdas, key=lambda lam: valid[lam]["tf"].result()["mrr"])
        best[score] = (valid[lam_best]["tf"].result()["mrr"], lam_best)
        shown = lambdas if args.test_all else [lam_best]
        test = evaluate_recurrency(dataset, "test", shown, index, args.batch_size, score)
        for lam in shown:
            print(json.dumps({"dataset": dataset.name, "split": "test", "score": score, "lambda": lam,
                              "best_valid": lam == lam_best, **_metrics(test[lam])}), flush=True)
    top = max(best, key=lambda k: best[k][0])
    print(json.dumps({
        "dataset": dataset.name, "best_score": top, "best_lambda": best[top][1],
        "history": "single-step, ground truth of earlier days",
        "entities": dataset.num_entities, "relations": dataset.num_relations, "timestamps": dataset.num_times,
        "cpu_s": round(time.process_time() - cpu0, 2), "wall_s": round(time.perf_counter() - wall0, 2),
        "index_build_cpu_s": round(build_cpu, 2), "index_mib": round(index.nbytes / 2**20, 1),
        "threads": args.threads, "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }), flush=True)


if __name__ == "__main__":
    restart_with_allocator_env()
    main()
