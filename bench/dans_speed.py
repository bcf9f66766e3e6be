"""Epoch time and training throughput of full DANS-KGC against its `dans=false` baseline, in one run.

    python bench/dans_speed.py --config configs/dans_umls.yaml --epochs 3 --threads 1 [--set key=value ...]
    python bench/dans_speed.py --dataset umls --set dim=200 --set negatives=64
    python bench/dans_speed.py --config configs/dans_complex_wn18rr.yaml --data-root ../shared/datasets --max-batches 20

Both recipes get the same params (the run file's, then --set; only `dans` differs), so dim / batch /
negatives match; the timed epochs are the first ones of a run with the given `epochs`. Each is warmed up
for one epoch, then their epochs alternate (so background load hits both alike) and the median epoch
time (wall and CPU) is reported with training triples/s (one epoch = every training triple in both directions).
Preparation (pre-training, DAM, K-means) is cached and not timed. `--max-batches N` (for the large graphs,
where one epoch takes minutes) trains only the first N batches of each "epoch" and reports the epoch time
projected to all batches (`projected_epoch_s`, `projected_epoch_cpu_s`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import yaml

from kgsearch.allocator import restart_with_allocator_env, tune_allocator
from kgsearch.config import config_from_dict
from kgsearch.dans.recipe import DansConfig, DansRecipe
from kgsearch.data import load
from kgsearch.errors import KGSearchError, cli_entry
from kgsearch.run.runfile import RunFile


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise KGSearchError(f"--set {item!r}: expected key=value")
        key, value = item.split("=", 1)
        out[key] = yaml.safe_load(value)
    return out


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="run file (python -m kgsearch.train format) whose params to use")
    parser.add_argument("--dataset", help="dataset name or path (default: the run file's, else umls)")
    parser.add_argument("--data-root")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batches", type=int, default=0,
                        help="train only this many batches per timed epoch and project to a whole epoch")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="DansConfig field for both variants (e.g. dim=200)")
    args = parser.parse_args(argv)
    tune_allocator()  # kgsearch/allocator.py: page faults otherwise cost up to a third of an epoch
    torch.set_num_threads(args.threads)
    run = RunFile.load(args.config) if args.config else RunFile(model="dans", dataset="umls")
    dataset = load(args.dataset or run.dataset, data_root=args.data_root or run.data_root)
    params = {**run.params, **parse_sets(args.set)}
    recipes = {}
    for name, dans in (("baseline", False), ("dans", True)):
        epochs = max(int(params.get("epochs", 0)), args.epochs + 1)
        config = config_from_dict(DansConfig, {**params, "dans": dans, "epochs": epochs}, "--set")
        prepared = DansRecipe.prepare(config, dataset)
        recipes[name] = recipe = DansRecipe(config, dataset, prepared, device=args.device)
        if args.max_batches:  # a prefix of each epoch's shuffled shard: the same batches a full epoch starts with
            full_shard = recipe.epoch_shard
            recipe.epoch_shard = lambda epoch, f=full_shard, n=args.max_batches * config.batch_size: f(epoch)[:n]
        recipes[name].train_epoch(1)  # warm-up (allocator, first-call overheads)
    times: dict[str, list[float]] = {name: [] for name in recipes}
    cpu: dict[str, list[float]] = {name: [] for name in recipes}  # steadier than wall on a shared VM
    for epoch in range(2, args.epochs + 2):
        for name, recipe in recipes.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            recipe.train_epoch(epoch)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    n_train = len(dataset.train)
    result = {"dataset": dataset.name, "threads": args.threads, "device": args.device,
              "config": {k: v for k, v in vars(recipes["dans"].config).items()
                         if k in ("dim", "batch_size", "negatives", "scorer", "diffusion_steps", "sampling_steps",
                                  "gen_fraction", "gen_negatives", "denoiser_hidden")},
              "train_triples": len(dataset.train)}
    for name, values in times.items():
        median = statistics.median(values)
        result[name] = {"epoch_s": round(median, 3), "epochs_s": [round(v, 3) for v in values],
                        "triples_per_s": round(n_train / median, 1),
                        "epoch_cpu_s": round(statistics.median(cpu[name]), 3)}
    if args.max_batches:
        batches = -(-len(recipes["dans"].queries) // recipes["dans"].config.batch_size)  # a full epoch's
        scale = batches / min(args.max_batches, batches)
        result["batches_per_epoch"] = batches
        for name in times:
            result[name]["projected_epoch_s"] = round(result[name]["epoch_s"] * scale, 1)
            result[name]["projected_epoch_cpu_s"] = round(result[name]["epoch_cpu_s"] * scale, 1)
            result[name]["triples_per_s"] = round(n_train / (result[name]["epoch_s"] * scale), 1)
    result["ratio"] = round(result["dans"]["epoch_s"] / result["baseline"]["epoch_s"], 3)
    result["cpu_ratio"] = round(result["dans"]["epoch_cpu_s"] / result["baseline"]["epoch_cpu_s"], 3)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    restart_with_allocator_env()
    main()
