"""DKGR-DR speed: R-GCN implementations (Eq. 3), seconds per training epoch, peak memory.

    python bench/dkgr_speed.py layers --dataset icews14 --threads 1
    python bench/dkgr_speed.py epoch --dataset icews14 --history-len 3 --steps 30 --threads 1
    python bench/dkgr_speed.py epoch --dataset icews18 --history-len 6 --steps 10 --threads 1
    python bench/dkgr_speed.py epoch --dataset icews18 --history-len 6 --steps 20 --threads 1 \
        --set timestamps_per_step=4 --set share_history=true      # any DkgrConfig field

`layers`: one R-GCN layer (forward + backward) on real snapshots of the dataset, d = 200, for
  * scatter  -- ours: W_1 (h_j + r) aggregated with index_add onto the active rows, self-loops;
  * rgcnconv -- PyG RGCNConv (per-relation weights, basis decomposition, mean per relation);
  * fast_rgcnconv -- PyG FastRGCNConv (gathers one d x d weight per edge).
`epoch`: `--steps` training timestamps of the real recipe (after a warm-up on 3) extrapolated to one
  epoch (every training timestamp with history, or `timestamps_per_epoch` of them), plus one full
  validation pass; prints peak RSS. `--pick spread` (default) times runs of `timestamps_per_step`
  consecutive timestamps evenly spaced over the training period; `--pick first` the first ones, as the
  rows in docs/benchmarks_dkgr.md before 2026-12-02 did (the first m - 1 of those have a shorter
  history and many early days fewer facts: on ICEWS05-15 that measured 1.43 CPU-s per step against
  2.65 over an epoch). `cpu_s_per_step` is per training timestamp (one step each
  unless `timestamps_per_step` > 1).

Times are CPU seconds of this process (time.process_time) *and* wall seconds: on a shared machine
the CPU time is the stable figure, wall time includes waiting for other jobs' cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch
import yaml

from kgsearch.allocator import restart_with_allocator_env, tune_allocator
from kgsearch.config import config_from_dict
from kgsearch.data import load
from kgsearch.dkgr.recipe import DkgrConfig, DkgrRecipe
from kgsearch.errors import cli_entry


def _timed(fn, repeats: int) -> tuple[float, float]:
    """Median (cpu seconds, wall seconds) of `repeats` calls after one warm-up."""
    fn()
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        fn()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def bench_layers(args) -> dict:
    from torch_geometric.nn import FastRGCNConv, RGCNConv

    from kgsearch.dkgr.rgcn import ScatterRGCNLayer

    dataset = load(args.dataset, data_root=args.data_root)
    config = DkgrConfig(history_len=1)
    prepared = DkgrRecipe.prepare(config, dataset)
    from kgsearch.dkgr.history import SnapshotHistory

    hist = SnapshotHistory(prepared["history"], 1)
    slots = list(range(0, hist.num_snapshots, max(1, hist.num_snapshots // args.snapshots)))[:args.snapshots]
    snaps = [hist.snapshot(s) for s in slots]
    N, R2, d = dataset.num_entities, 2 * dataset.num_relations, args.dim
    torch.manual_seed(0)
    h = torch.randn(N, d, requires_grad=True)
    rel = torch.randn(R2, d, requires_grad=True)
    layers = {
        "scatter": ScatterRGCNLayer(d, activation=True, dropout=0.0),
        "rgcnconv": RGCNConv(d, d, R2, num_bases=args.num_bases, aggr="mean"),
        "fast_rgcnconv": FastRGCNConv(d, d, R2, num_bases=args.num_bases, aggr="mean"),
    }
    edges = [(torch.stack([s.src, s.dst]), s.rel) for s in snaps]
    out = {"dataset": dataset.name, "entities": N, "relations_with_inverse": R2, "dim": d,
           "mean_edges_per_snapshot": sum(s.src.numel() for s in snaps) / len(snaps),
           "layers": {name: {} for name in layers}}
    for name, layer in layers.items():
        for mode in ("forward", "forward+backward"):
            if name == "rgcnconv" and mode != "forward" and not args.rgcnconv_backward:
                # Without pyg-lib, RGCNConv loops over the 2R relation types and saves one [N, d]
                # aggregate per type for backward: 2R * N * d floats (2.4 GiB per call on ICEWS14).
                est = R2 * N * d * 4 / 2**30
                out["layers"][name][mode] = f"skipped: needs ~{est:.1f} GiB for autograd (--rgcnconv-backward)"
                continue

            def run(layer=layer, name=name, mode=mode):
                with torch.set_grad_enabled(mode != "forward"):
                    for snap, (ei, et) in zip(snaps, edges):
                        y = layer(h, rel, snap) if name == "scatter" else layer(h, ei, et)
                        if mode != "forward":
                            y.sum().backward()
            cpu, wall = _timed(run, args.repeats)
            out["layers"].setdefault(name, {})[mode] = {
                "cpu_ms_per_call": round(1e3 * cpu / len(snaps), 2),
                "wall_ms_per_call": round(1e3 * wall / len(snaps), 2)}
    return out


def timed_timestamps(all_times: list, steps: int, block: int, pick: str) -> list:
    """`steps` training timestamps to time: the first ones, or runs of `block` consecutive ones (a step of
    `timestamps_per_step` needs neighbours) evenly spaced over the whole training period."""
    if pick == "first" or steps >= len(all_times):
        return all_times[:steps]
    runs = max(1, -(-steps // block))
    span = len(all_times) - block
    starts = sorted({round(i * span / max(runs - 1, 1)) for i in range(runs)})
    return [all_times[s + j] for s in starts for j in range(block)][:steps]


def bench_epoch(args) -> dict:
    dataset = load(args.dataset, data_root=args.data_root)
    params = {"history_len": args.history_len, "precision": args.precision, "rgcn_impl": args.rgcn_impl}
    for item in args.set:
        key, _, value = item.partition("=")
        params[key] = yaml.safe_load(value)
    config = config_from_dict(DkgrConfig, params, "bench")
    prepared = DkgrRecipe.prepare(config, dataset)
    recipe = DkgrRecipe(config, dataset, prepared, device=args.device)
    all_times = recipe.train_times
    n_epoch = min(len(all_times), config.timestamps_per_epoch or len(all_times))
    recipe.train_times = all_times[len(all_times) // 2:][:3]
    recipe.train_epoch(0)                                   # warm-up
    recipe.train_times = timed_timestamps(all_times, args.steps, config.timestamps_per_step, args.pick)
    c, w = time.process_time(), time.perf_counter()
    recipe.train_epoch(1)
    cpu_step = (time.process_time() - c) / len(recipe.train_times)
    wall_step = (time.perf_counter() - w) / len(recipe.train_times)
    c, w = time.process_time(), time.perf_counter()
    val = recipe.evaluate("valid")
    eval_cpu, eval_wall = time.process_time() - c, time.perf_counter() - w
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"dataset": dataset.name, "entities": dataset.num_entities, "history_len": args.history_len,
            "precision": "bf16" if recipe.bf16 else "fp32", "rgcn_impl": args.rgcn_impl,
            "overrides": {k: v for k, v in params.items()
                          if k not in ("history_len", "precision", "rgcn_impl")},
            "threads": torch.get_num_threads(), "train_timestamps_per_epoch": n_epoch,
            "timed_steps": len(recipe.train_times), "pick": args.pick,
            "cpu_s_per_step": cpu_step, "wall_s_per_step": wall_step,
            "cpu_s_per_epoch": cpu_step * n_epoch, "wall_s_per_epoch": wall_step * n_epoch,
            "valid_eval_cpu_s": eval_cpu, "valid_eval_wall_s": eval_wall,
            "valid_queries": val["tf"].result()["count"], "peak_rss_mib": peak_mib}


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=["layers", "epoch"])
    parser.add_argument("--dataset", default="icews14")
    parser.add_argument("--data-root")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dim", type=int, default=200, help="layers: embedding size")
    parser.add_argument("--num-bases", type=int, default=100, help="layers: RGCNConv basis count")
    parser.add_argument("--snapshots", type=int, default=10, help="layers: snapshots per timing")
    parser.add_argument("--repeats", type=int, default=3, help="layers: timed repeats (median)")
    parser.add_argument("--rgcnconv-backward", action="store_true",
                        help="layers: also time RGCNConv forward+backward (needs many GiB)")
    parser.add_argument("--history-len", type=int, default=3, help="epoch: m")
    parser.add_argument("--steps", type=int, default=30, help="epoch: timed training steps")
    parser.add_argument("--pick", default="spread", choices=["spread", "first"],
                        help="epoch: which training timestamps to time (see above)")
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"])
    parser.add_argument("--rgcn-impl", default="scatter", choices=["scatter", "pyg", "pyg_fast"])
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="epoch: a DkgrConfig field (YAML value), e.g. share_history=true; repeatable")
    args = parser.parse_args(argv)
    tune_allocator()  # kgsearch/allocator.py: page faults otherwise cost up to a third of an epoch
    torch.set_num_threads(args.threads)
    result = bench_layers(args) if args.what == "layers" else bench_epoch(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    restart_with_allocator_env()
    main()
