"""The sweep CLI: Ray Tune + Optuna (TPE) + ASHA over one search-space file.

    python -m kgsearch.sweep dans_umls                 # search_spaces/dans_umls.yaml, embedded Ray
    python -m kgsearch.sweep dans_umls --smoke         # tiny dims, 1-2 epochs: checks the wiring
    python -m kgsearch.sweep path/to/sweep.yaml --storage /shared/runs --name try2
    python -m kgsearch.sweep dans_umls --resume        # continue a killed sweep (finished trials kept)
    python -m kgsearch.sweep dans_umls --resume auto   # continue it if it exists, else start it
    python -m kgsearch.sweep dans_umls --resume --num-samples 16   # extend a (finished) sweep by 16 trials
    python -m kgsearch.sweep dans_umls --set fixed.lr=0.01 --set max_concurrent_trials=4 --dry-run
    python -m kgsearch.sweep --list                    # the shipped sweeps
    python -m kgsearch.sweep dans_umls --searcher random --no-asha --time-budget 18   # a baseline search
    python -m kgsearch.sweep dans_umls --no-retrain     # best/ = the best search trial (no top-k re-training)
    python -m kgsearch.sweep dans_fb15k237 --data-root DATASETS --storage s3://bucket/kgsearch

With RAY_ADDRESS set (or inside `ray job submit`) it joins that cluster; otherwise it starts a local
Ray sized to this machine (no GPU -> CPU trials; too few CPUs -> smaller trials). Results go to
<storage>/<name>/ (default ./runs/<sweep name>; storage may be a path or an s3:// / gs:// URI):
trials.csv, retrain/ (the top-k configurations re-trained at full length with each seed of `retrain:`),
best/config.yaml (the best mean over the seeds, re-runnable with `python -m kgsearch.train`),
best/checkpoint.pt, best/metrics.json (per-seed rows, mean and std of each metric), summary.txt, and
TensorBoard event files (`tensorboard --logdir <storage>/<name>`).
Bad input (sweep file, flags, data root, --resume target) exits with code 2 before anything starts;
every problem of a sweep file is reported at once. SIGTERM (`ray job stop`) stops it like Ctrl-C: the
state is saved, trials.csv and the summary are written, and it exits with 143 (Ctrl-C: 130).
"""

from __future__ import annotations

import argparse
import sys

from kgsearch.errors import cli_entry
from kgsearch.sweep.progress import echo
from kgsearch.sweep.trackers import PACKAGES
from kgsearch.sweep.validate import load_spec

EXIT_SIGTERM = 143  # 128 + SIGTERM, as a shell reports a process ended by it
EXIT_INTERRUPTED = 130  # 128 + SIGINT


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _samples(text: str) -> tuple[int, bool]:
    """--num-samples N (the number of trials) or +N (N more, with --resume): (N, whether it adds)."""
    add = text.startswith("+")
    return _positive(text[1:] if add else text), add


def _auto(text: str) -> str:
    if text != "auto":
        raise argparse.ArgumentTypeError(f"the only value --resume takes is 'auto', got {text!r} "
                                         "(put the sweep name before --resume)")
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kgsearch.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", nargs="?", help="sweep name (search_spaces/NAME.yaml) or path to a sweep file")
    parser.add_argument("--list", action="store_true", help="list the shipped sweeps (model, dataset, description)")
    parser.add_argument("--dry-run", action="store_true",
                        help="validate, print the resolved sweep and its estimated cost; start nothing")
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override a key of the sweep file (YAML value), e.g. fixed.lr=0.01, "
                        "resources.cpus_per_worker=2, max_concurrent_trials=4; repeatable")
    parser.add_argument("--track", action="append", default=[], choices=sorted(PACKAGES),
                        help="log trials to MLflow / Weights & Biases (the package must be installed)")
    parser.add_argument("--num-samples", type=_samples, metavar="N",
                        help="number of trials (overrides num_samples); with --resume: N more trials (earlier "
                        "ones stay in the study); with --resume auto: at least N in all")
    parser.add_argument("--max-epochs", type=_positive, help="epochs per trial (overrides scheduler.max_t)")
    parser.add_argument("--max-concurrent", type=_positive, help="trials at once (overrides max_concurrent_trials)")
    parser.add_argument("--storage", help="results folder (default: the file's `storage`, else ./runs; "
                        "~/kgsearch-runs inside `ray job submit`)")
    parser.add_argument("--name", help="experiment name, a folder under storage (default: the sweep name)")
    parser.add_argument("--data-root", help="folder holding datasets by name (default: $KGSEARCH_DATA_ROOT)")
    parser.add_argument("--resume", nargs="?", const=True, default=False, type=_auto, metavar="auto",
                        help="continue the sweep in <storage>/<name>; `--resume auto`: continue it if there "
                        "is one, else start it (for retried jobs)")
    parser.add_argument("--smoke", action="store_true", help="apply the file's `smoke:` block (tiny, 1-2 epochs)")
    parser.add_argument("--fail-fast", action="store_true", help="stop the sweep at the first failed trial")
    parser.add_argument("--searcher", choices=("tpe", "random"), help="Optuna sampler (overrides searcher.type)")
    parser.add_argument("--no-asha", action="store_true", help="no early stopping: every trial runs max_t epochs")
    parser.add_argument("--no-retrain", action="store_true",
                        help="skip the re-training of the top-k configurations with seeds (retrain.top_k 0): "
                        "best/ is the best search trial")
    parser.add_argument("--cpu", action="store_true", help="run trials on CPU even where the sweep asks for GPUs")
    parser.add_argument("--time-budget", type=_positive, metavar="MINUTES",
                        help="stop the search after this many minutes (running trials are stopped too); "
                        "overrides the sweep file's time_budget_minutes")
    args = parser.parse_args(argv)
    if not args.list and not args.sweep:
        parser.error("a sweep name or file is required (or --list)")
    plus = bool(args.num_samples and args.num_samples[1])
    args.num_samples = args.num_samples[0] if args.num_samples else None
    if plus and args.resume != True:  # noqa: E712 (--resume is True, "auto" or False)
        parser.error(f"--num-samples +{args.num_samples} adds trials to a sweep being resumed: pass --resume "
                     f"(not --resume auto: a retried job would add them again), or --num-samples "
                     f"{args.num_samples} for the number of trials")
    # --resume --num-samples N adds N trials; --resume auto (a retried job) makes N the total, so that
    # a retry never adds them twice.
    args.add_samples = args.resume is True and args.num_samples is not None
    return args


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.list:
        from kgsearch.sweep.plan import list_text

        echo(list_text())
        return 0
    sets = [f"tracking.{name}={{}}" for name in args.track] + args.set
    origins = [f"--track {name}" for name in args.track] + [f"--set {item}" for item in args.set]
    spec = load_spec(args.sweep, smoke=args.smoke, num_samples=args.num_samples, max_epochs=args.max_epochs,
                     searcher=args.searcher, asha=False if args.no_asha else None,
                     max_concurrent_trials=args.max_concurrent, data_root=args.data_root, sets=sets,
                     set_origins=origins, retrain=False if args.no_retrain else None,
                     time_budget_minutes=args.time_budget)
    if args.dry_run:
        from kgsearch.sweep.plan import dry_run_text
        from kgsearch.sweep.run import experiment_store

        store = experiment_store(spec, args.storage, args.name)
        echo(dry_run_text(spec, str(store.local or store.uri)))
        return 0
    if args.resume and any([args.max_epochs, args.searcher, args.no_asha, args.smoke,
                            args.max_concurrent, args.time_budget, args.set, args.track]):
        echo("note: --resume continues with the settings the sweep started with; flags other than "
             "--num-samples and --no-retrain are ignored")

    from kgsearch.sweep.results import STATUS_FAILED
    from kgsearch.sweep.run import run_sweep

    outcome = run_sweep(spec, storage=args.storage, name=args.name, data_root=args.data_root,
                        resume=args.resume, fail_fast=args.fail_fast,
                        time_budget_s=spec.time_budget_minutes * 60 if spec.time_budget_minutes else None,
                        cpu_only=args.cpu,
                        resume_samples=args.num_samples if args.resume else None, resume_add=args.add_samples,
                        retrain=not args.no_retrain)
    if outcome.terminated:
        return EXIT_SIGTERM  # stopped (ray job stop, kubectl delete): the summary says how to resume
    if args.fail_fast and any(r.status == STATUS_FAILED for r in outcome.rows):
        return 1  # checked first: a fail-fast stop also leaves unstarted trials for --resume
    if outcome.interrupted:
        return EXIT_INTERRUPTED  # Ctrl-C: Tune saved the state; the summary says how to resume
    return 0


if __name__ == "__main__":
    sys.exit(main())
