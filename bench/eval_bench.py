"""Full filtered evaluation throughput: random-initialised RotatE on a static benchmark's test split.

    python bench/eval_bench.py --data-root ../shared/datasets --dataset fb15k-237 --dim 500

Prints queries/second (both directions: 2 queries per test triple), wall time and peak memory
(resident set high-water mark, so it includes the dataset and the filter).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from kgsearch.data import load
from kgsearch.evaluation import evaluate_static, static_filter
from kgsearch.models.kge import RotatE


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default="../shared/datasets")
    parser.add_argument("--dataset", default="fb15k-237")
    parser.add_argument("--dim", type=int, default=500, help="RotatE complex dimension")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--limit", type=int, default=0, help="evaluate only the first N test triples")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    t0 = time.perf_counter()
    data = load(args.dataset, data_root=args.data_root)
    flt = static_filter(data)
    setup = time.perf_counter() - t0
    model = RotatE(data.num_entities, data.num_relations, args.dim).eval()
    test = data.test[: args.limit] if args.limit else data.test
    t0 = time.perf_counter()
    acc = evaluate_static(model.score_all, test, data.num_entities, data.num_relations, flt,
                          batch_size=args.batch_size)
    wall = time.perf_counter() - t0
    res = acc.result()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"dataset={args.dataset} entities={data.num_entities} test_triples={len(test)} "
          f"queries={res['count']} dim={args.dim} (complex) threads={torch.get_num_threads()}")
    print(f"load+filter {setup:.1f}s  eval {wall:.1f}s  {res['count'] / wall:.0f} queries/s  "
          f"peak RSS {peak:.0f} MiB  (random model MRR {res['mrr']:.5f})")


if __name__ == "__main__":
    main()
