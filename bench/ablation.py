"""Ablation table: one run file trained as several variants over several seeds, test metrics mean ± std.

    python bench/ablation.py configs/dans_rotate_family.yaml --seeds 0 1 2 \
        --variant full: --variant "w/o DFS:dfs=false" --variant "w/o CCD:ccd=false" \
        --variant "w/o DTM:dtm=false" --variant "baseline:dans=false" --out docs/ablation_dans_family.json
    python bench/ablation.py configs/dkgr_icews14.yaml --set epochs=3 --variant full: \
        --variant=-RGCN:rgcn=false --variant=-GRU:gru=false --variant=-ConvE:decoder=fc \
        --variant=-S:static=false --out docs/ablation_dkgr_icews14.json

A variant is `NAME:key=value,key=value` (empty after the colon: the run file as is). Each finished run is
appended to the --out JSON at once and skipped when the command is run again, so a long table can be
built over several sittings. Prints the markdown table at the end.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path

import torch
import yaml

from kgsearch.allocator import restart_with_allocator_env, tune_allocator
from kgsearch.errors import KGSearchError, cli_entry
from kgsearch.run.runfile import RunFile
from kgsearch.train import run_training


def parse_pairs(text: str, what: str) -> dict:
    pairs = {}
    for item in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in item:
            raise KGSearchError(f"{what}: expected key=value, got {item!r}")
        key, value = item.split("=", 1)
        pairs[key.strip()] = yaml.safe_load(value)
    return pairs


def parse_variant(text: str) -> tuple[str, dict]:
    if ":" not in text:
        raise KGSearchError(f"--variant {text!r}: expected NAME:key=value,... (e.g. 'w/o DFS:dfs=false')")
    name, pairs = text.split(":", 1)
    return name.strip(), parse_pairs(pairs, f"--variant {name.strip()!r}")


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def table(done: list[dict], names: list[str], keys: list[str]) -> str:
    lines = ["| variant | seeds | " + " | ".join(keys) + " | train min/run |",
             "|---|---|" + "---|" * len(keys) + "---|"]
    for name in names:
        runs = [r for r in done if r["variant"] == name]
        if not runs:
            continue
        cells = [mean_std([r["test"][k] for r in runs]) for k in keys]
        minutes = statistics.mean(r["wall_s"] for r in runs) / 60
        lines.append(f"| {name} | {len(runs)} | " + " | ".join(cells) + f" | {minutes:.1f} |")
    return "\n".join(lines)


@cli_entry
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="run file (python -m kgsearch.train format)")
    parser.add_argument("--variant", action="append", required=True, help="NAME:key=value,... (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--set", action="append", default=[], help="key=value for every variant")
    parser.add_argument("--data-root")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--metrics", nargs="+", help="test metrics in the table (default: the model's MRR/H@1/H@10)")
    parser.add_argument("--out", type=Path, required=True, help="JSON of finished runs (appended, reused)")
    args = parser.parse_args(argv)
    tune_allocator()  # kgsearch/allocator.py: page faults otherwise cost up to a third of an epoch
    torch.set_num_threads(args.threads)

    base = RunFile.load(args.run)
    common = parse_pairs(",".join(args.set), "--set")
    variants = [parse_variant(v) for v in args.variant]
    names = [name for name, _ in variants]
    if len(set(names)) != len(names):
        raise KGSearchError(f"--variant: duplicate names in {names}")
    done = json.loads(args.out.read_text()) if args.out.exists() else []
    keys = args.metrics or (["test_tf_mrr", "test_tf_hits@1", "test_tf_hits@10", "test_rel_mrr"]
                            if base.model == "dkgr" else ["test_mrr", "test_hits@1", "test_hits@10"])

    for name, changes in variants:
        for seed in args.seeds:
            params = {**base.params, **common, **changes, "seed": seed}
            if any(r["variant"] == name and r["params"] == params for r in done):
                print(f"{name} seed {seed}: already in {args.out}, skipped", flush=True)
                continue
            run = dataclasses.replace(base, params=params)
            started = time.perf_counter()
            result = run_training(run, f"{args.run} [{name}]", None, args.data_root)
            wall = time.perf_counter() - started
            done.append({"variant": name, "seed": seed, "params": params, "wall_s": round(wall, 1),
                         "best_epoch": result["best_epoch"], "val": result["val"], "test": result["test"]})
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(done, indent=1))
            print(f"{name} seed {seed}: " + " ".join(f"{k}={result['test'][k]:.4f}" for k in keys)
                  + f" ({wall / 60:.1f} min)", flush=True)
    print(table(done, names, keys))


if __name__ == "__main__":
    restart_with_allocator_env()
    main()
