"""kgsearch against PyKEEN 1.11, side by side in one run: RotatE training and filtered evaluation throughput.

    nice .venv/bin/python bench/vs_pykeen.py --pykeen-python .venv-pykeen/bin/python \\
        --data-root /work/shared/datasets --threads 1 --epochs 3 --limit 1000

1. Training (UMLS): plain RotatE, the same `--dim` complex dims, `--negatives` uniform random negatives per
   positive, `--batch-size` positives per batch, self-adversarial (NSSA) loss with margin `--gamma` and
   temperature `--adversarial-temperature`, Adam with `--lr`. kgsearch runs the DANS-KGC recipe with
   `dans: false` (its base-scorer baseline) and `filter_negatives: false`; PyKEEN runs RotatE +
   NSSALoss + SLCWATrainingLoop with the basic (unfiltered) negative sampler. One warm-up epoch each,
   then `--epochs` timed epochs. The unit is a *positive*: one (query, answer) pair scored against its
   negatives. kgsearch trains on both directions of every training triple (2 positives per triple per
   epoch), PyKEEN on the triples (1 positive per triple per epoch, its negatives corrupt head or tail),
   so positives/s is the like-for-like rate and the epoch times are shown as they are.
2. Evaluation (FB15k-237 test, first `--limit` triples, both directions): a random-initialised RotatE of
   the same size, filtered by train + valid + test. kgsearch: `evaluate_static` + `static_filter` over
   `RotatE.score_all`, once with KGSEARCH_COMPILE=0 and once with the default (the fused compiled path
   of kgsearch.models.fused, with a fresh inductor cache so the compile cost is the cold one; should
   `match_all` not use it, an extra run calls `fused_match_all` directly). `--chunk-probe N` adds a
   what-if eager run with `kgsearch.models.kge._CHUNK_ELEMENTS = N`. PyKEEN: RankBasedEvaluator
   (filtered=True) with the three splits as additional filter triples, scores sliced over entities
   (`--pykeen-slice-size`; its own default, all entities at once, needs GBs per temporary). The first
   call (one batch of triples, both directions: compile and allocator warm-up) is timed apart from the
   steady-state pass.

Every measurement runs in its own process (so ru_maxrss is that measurement's peak), the PyKEEN ones with
PyKEEN's interpreter executing this same file (`--side pykeen`, which imports neither kgsearch nor
anything outside PyKEEN's venv). Both sides get the same triples and vocabulary: the parent writes the id
triples and name lists of each dataset once, PyKEEN builds its TriplesFactory from the labeled triples
with that vocabulary, and each side reports a digest of the triples it used. Throughput is reported on
wall-clock and on process CPU time (the CPU here is shared, so CPU time is the steadier number at
`--threads 1`), with the kernel's share of that CPU time (page faults of freshly mapped temporaries).
`--table-from RUN.json` re-prints the table of a saved `--json-out` run. Results: docs/benchmarks_pykeen.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
RESULT_PREFIX = "RESULT "


# -- helpers shared by both sides (torch / numpy only) ------------------------------------------------
def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _digest(triples: torch.Tensor) -> str:
    """Order-free fingerprint of a set of id triples (PyKEEN sorts the triples it maps)."""
    rows = triples.long().numpy()
    rows = rows[np.lexsort(rows.T[::-1])]
    return hashlib.sha256(np.ascontiguousarray(rows).tobytes()).hexdigest()[:16]


def _cpu_seconds() -> float:
    """CPU time of this process (all threads) plus its finished children (e.g. the C++ compiler under
    torch.compile; live worker-pool processes are not counted)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def _sys_seconds() -> float:
    """Kernel CPU time of this process: page faults of freshly mmapped temporaries land here."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_stime


class _Clock:
    """Wall-clock, CPU time (see _cpu_seconds) and kernel CPU time since construction."""

    def __init__(self) -> None:
        self.wall, self.cpu, self.sys = time.perf_counter(), _cpu_seconds(), _sys_seconds()

    def lap(self) -> tuple[float, float]:
        return time.perf_counter() - self.wall, _cpu_seconds() - self.cpu

    def sys_share(self) -> float:
        return (_sys_seconds() - self.sys) / max(_cpu_seconds() - self.cpu, 1e-9)


def _emit(result: dict) -> None:
    print(RESULT_PREFIX + json.dumps(result), flush=True)


def _epoch_summary(walls: list[float], cpus: list[float], positives: list[int], n_triples: int) -> dict:
    total_pos, wall, cpu = sum(positives), sum(walls), sum(cpus)
    return {"epoch_wall_s": [round(w, 3) for w in walls], "epoch_cpu_s": [round(c, 3) for c in cpus],
            "median_epoch_wall_s": round(statistics.median(walls), 3),
            "positives_per_epoch": positives[0], "train_triples": n_triples,
            "positives_per_s_wall": total_pos / wall, "positives_per_s_cpu": total_pos / cpu,
            "triples_per_s_wall": n_triples * len(walls) / wall}


# -- kgsearch side ------------------------------------------------------------------------------------
def kgsearch_train(args: argparse.Namespace) -> dict:
    from kgsearch.config import config_from_dict
    from kgsearch.dans import model as dans_model
    from kgsearch.dans.recipe import DansConfig, DansRecipe
    from kgsearch.data import load

    dataset = load(args.train_dataset, data_root=args.data_root)
    params = {"dans": False, "scorer": "rotate", "dim": args.dim, "negatives": args.negatives,
              "batch_size": args.batch_size, "lr": args.lr, "gamma": args.gamma,
              "adversarial_temperature": args.adversarial_temperature,
              "filter_negatives": args.kgsearch_filter_negatives, "seed": args.seed,
              "epochs": args.warmup_epochs + args.epochs}
    config = config_from_dict(DansConfig, params, "bench/vs_pykeen.py")
    recipe = DansRecipe(config, dataset, DansRecipe.prepare(config, dataset))

    # Observe the work actually done: negatives drawn per positive and positives per batch.
    seen = {"negatives_shape": set(), "masked": set(), "batch_sizes": []}
    sample = dans_model.sample_negatives

    def observed_sample(anchor, rel, num_entities, count, truth, generator=None):
        neg, mask = sample(anchor, rel, num_entities, count, truth, generator)
        seen["negatives_shape"].add(int(neg.shape[1]))
        seen["masked"].add(mask is not None)
        seen["batch_sizes"].append(int(neg.shape[0]))
        return neg, mask

    dans_model.sample_negatives = observed_sample
    walls, cpus, positives = [], [], []
    timed_clock = None
    for epoch in range(1, args.warmup_epochs + args.epochs + 1):
        seen["batch_sizes"].clear()
        if epoch == args.warmup_epochs + 1:
            timed_clock = _Clock()
        clock = _Clock()
        out = recipe.train_epoch(epoch)
        wall, cpu = clock.lap()
        if epoch > args.warmup_epochs:
            walls.append(wall)
            cpus.append(cpu)
            positives.append(int(out["train_queries"]))
    scorer = recipe.model.scorer
    return {
        "side": "kgsearch", "task": "train", "threads": torch.get_num_threads(),
        "train_digest": _digest(dataset.train), "final_loss": out["loss"],
        "settings": {
            "model": f"DansRecipe(dans=false) / {type(scorer).__name__}",
            "entity_table": f"{list(scorer.entity.shape)} {scorer.entity.dtype} (= {scorer.dim} complex)",
            "negatives_per_positive": sorted(seen["negatives_shape"]),
            "negatives_filtered": sorted(seen["masked"]),
            "batches_per_epoch": len(seen["batch_sizes"]), "largest_batch": max(seen["batch_sizes"]),
            "loss": f"margin_loss(gamma={config.gamma}, adversarial_temperature={config.adversarial_temperature},"
                    f" mean over positives)",
            "distance": "sum_i |h_i r_i - t_i| (sum of complex moduli)",
            "optimizer": f"{type(recipe.optimizer).__name__}(lr={config.lr})",
        },
        **_epoch_summary(walls, cpus, positives, len(dataset.train)),
        "sys_share": timed_clock.sys_share(), "peak_rss_mib": _peak_rss_mib(),
    }


def kgsearch_eval(args: argparse.Namespace) -> dict:
    from kgsearch.data import load
    from kgsearch.evaluation import evaluate_static, static_filter
    from kgsearch.models import fused
    from kgsearch.models.kge import RotatE

    if args.chunk_elements:
        # What-if: a different eager score_all block size (a module constant of kgsearch.models.kge).
        from kgsearch.models import kge

        kge._CHUNK_ELEMENTS = args.chunk_elements
    clock = _Clock()
    data = load(args.eval_dataset, data_root=args.data_root)
    flt = static_filter(data)
    setup_s = clock.lap()[0]
    torch.manual_seed(args.seed)
    model = RotatE(data.num_entities, data.num_relations, args.dim).eval()
    test = data.test[: args.limit] if args.limit else data.test
    rss_before = _peak_rss_mib()

    score_fn = model.score_all
    if args.fused_direct:
        # fused.py's compiled distances called directly, for while RotatE.match_all does not route to them yet.
        def score_fn(anchor: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
            query = model.query(anchor, rel)
            dist = fused.fused_match_all(type(model).match, query, model.entity)
            return -(dist if dist is not None else model.match_all(query))

    def run(triples: torch.Tensor):
        return evaluate_static(score_fn, triples, data.num_entities, data.num_relations, flt,
                               batch_size=args.eval_batch_size)

    clock = _Clock()
    run(test[: args.eval_batch_size])  # first call: compile (if fused) + allocator warm-up
    first_wall, first_cpu = clock.lap()
    clock = _Clock()
    result = run(test).result()
    wall, cpu = clock.lap()
    sys_share = clock.sys_share()
    compiled = bool(getattr(fused, "_compiled", {})) and not getattr(fused, "_broken", set())
    return {
        "side": "kgsearch", "task": "eval", "threads": torch.get_num_threads(),
        "compile_env": os.environ.get("KGSEARCH_COMPILE", "(unset: default)"), "fused_path_used": compiled,
        "fused_direct": args.fused_direct, "chunk_elements": args.chunk_elements,
        "test_digest": _digest(test), "entities": data.num_entities, "test_triples": len(test),
        "queries": result["count"], "mrr": result["mrr"], "setup_s": setup_s,
        "first_call_wall_s": first_wall, "first_call_cpu_s": first_cpu,
        "eval_wall_s": wall, "eval_cpu_s": cpu, "sys_share": sys_share,
        "queries_per_s_wall": result["count"] / wall, "queries_per_s_cpu": result["count"] / cpu,
        "rss_before_eval_mib": rss_before, "peak_rss_mib": _peak_rss_mib(),
    }


# -- PyKEEN side (runs under PyKEEN's venv: no kgsearch imports here) --------------------------------
def _pykeen_factories(exchange: Path, splits: tuple[str, ...], limit: int = 0) -> dict:
    """TriplesFactory per split from the labeled triples, with the shared vocabulary (ids = kgsearch ids);
    with `limit`, also "test_head": the first `limit` test triples in kgsearch's order."""
    from pykeen.triples import TriplesFactory

    data = np.load(exchange)
    entities, relations = data["entities"], data["relations"]
    entity_to_id = {name: i for i, name in enumerate(entities.tolist())}
    relation_to_id = {name: i for i, name in enumerate(relations.tolist())}
    out = {}
    wanted = [(split, data[split]) for split in splits]
    if limit:
        wanted.append(("test_head", data["test"][:limit]))
    for split, ids in wanted:
        labeled = np.stack([entities[ids[:, 0]], relations[ids[:, 1]], entities[ids[:, 2]]], axis=1)
        factory = TriplesFactory.from_labeled_triples(labeled, entity_to_id=entity_to_id,
                                                      relation_to_id=relation_to_id, compact_id=False)
        if _digest(factory.mapped_triples) != _digest(torch.from_numpy(ids)):  # PyKEEN sorts, so compare sets
            raise SystemExit(f"PyKEEN mapped the {split} triples differently from kgsearch's ids")
        out[split] = factory
    return out


def pykeen_train(args: argparse.Namespace) -> dict:
    from pykeen.losses import NSSALoss
    from pykeen.models import RotatE
    from pykeen.training import SLCWATrainingLoop
    from pykeen.training.callbacks import TrainingCallback

    factory = _pykeen_factories(Path(args.exchange), ("train",))["train"]
    loss = NSSALoss(margin=args.gamma, adversarial_temperature=args.adversarial_temperature)
    model = RotatE(triples_factory=factory, embedding_dim=args.dim, loss=loss, random_seed=args.seed)
    optimizer = torch.optim.Adam(model.get_grad_params(), lr=args.lr)
    loop = SLCWATrainingLoop(model=model, triples_factory=factory, optimizer=optimizer,
                             negative_sampler="basic", negative_sampler_kwargs={"num_negs_per_pos": args.negatives},
                             automatic_memory_optimization=False)

    class EpochClock(TrainingCallback):
        """Stamps the end of every epoch and records what each batch really holds."""

        def __init__(self) -> None:
            super().__init__()
            self.stamps = [(time.perf_counter(), _cpu_seconds(), _sys_seconds())]
            self.positives: dict[int, int] = {}
            self.batches: dict[int, int] = {}
            self.negatives_shape: set[tuple[int, ...]] = set()
            self.masked: set[bool] = set()
            self.largest = 0

        def on_batch(self, epoch, batch, batch_loss, **kwargs) -> None:
            n = int(batch["positives"].shape[0])
            self.positives[epoch] = self.positives.get(epoch, 0) + n
            self.batches[epoch] = self.batches.get(epoch, 0) + 1
            self.largest = max(self.largest, n)
            self.negatives_shape.add(tuple(batch["negatives"].shape[1:]))
            self.masked.add(batch.get("masks") is not None)

        def post_epoch(self, epoch, epoch_loss, **kwargs) -> None:
            self.stamps.append((time.perf_counter(), _cpu_seconds(), _sys_seconds()))

    clock = EpochClock()
    total = args.warmup_epochs + args.epochs
    losses = loop.train(triples_factory=factory, num_epochs=total, batch_size=args.batch_size, use_tqdm=False,
                        use_tqdm_batch=False, drop_last=False, callbacks=clock)
    timed = range(args.warmup_epochs + 1, total + 1)
    walls = [clock.stamps[e][0] - clock.stamps[e - 1][0] for e in timed]
    cpus = [clock.stamps[e][1] - clock.stamps[e - 1][1] for e in timed]
    sys_share = (clock.stamps[total][2] - clock.stamps[args.warmup_epochs][2]) / sum(cpus)
    ent = model.entity_representations[0]._embeddings.weight
    return {
        "side": "pykeen", "task": "train", "threads": torch.get_num_threads(),
        "train_digest": _digest(factory.mapped_triples), "final_loss": losses[-1],
        "settings": {
            "model": f"{type(model).__name__} / {type(model.interaction).__name__}",
            "entity_table": f"{list(ent.shape)} {ent.dtype}",
            "negatives_per_positive": sorted(s[0] for s in clock.negatives_shape),
            "negatives_filtered": sorted(clock.masked),
            "batches_per_epoch": clock.batches[total], "largest_batch": clock.largest,
            "loss": f"{type(loss).__name__}(margin={loss.margin}, adversarial_temperature="
                    f"{loss.inverse_softmax_temperature}, reduction={loss.reduction}, factor={loss.factor})",
            "distance": "||h * r - t||_2 over the complex vector (RotatEInteraction, p=2)",
            "optimizer": f"{type(loop.optimizer).__name__}(lr={loop.optimizer.param_groups[0]['lr']})",
            "negative_sampler": "basic (head or tail replaced uniformly, never by the true entity)",
        },
        **_epoch_summary(walls, cpus, [clock.positives[e] for e in timed], factory.num_triples),
        "sys_share": sys_share, "peak_rss_mib": _peak_rss_mib(),
    }


def pykeen_eval(args: argparse.Namespace) -> dict:
    from pykeen.evaluation import RankBasedEvaluator
    from pykeen.models import RotatE
    from pykeen.utils import prepare_filter_triples

    clock = _Clock()
    factories = _pykeen_factories(Path(args.exchange), ("train", "valid", "test"), args.limit)
    setup_s = clock.lap()[0]
    model = RotatE(triples_factory=factories["train"], embedding_dim=args.dim, random_seed=args.seed).eval()
    test = factories["test_head" if args.limit else "test"].mapped_triples
    filters = [factories[s].mapped_triples for s in ("train", "valid", "test")]
    evaluator = RankBasedEvaluator(filtered=True)
    rss_before = _peak_rss_mib()

    def run(triples: torch.Tensor):
        return evaluator.evaluate(model, triples, batch_size=args.eval_batch_size, slice_size=args.pykeen_slice_size,
                                  additional_filter_triples=filters, use_tqdm=False)

    clock = _Clock()
    prepare_filter_triples(mapped_triples=test, additional_filter_triples=filters)
    filter_s = clock.lap()[0]  # part of every evaluate() call on PyKEEN's side
    clock = _Clock()
    run(test[: args.eval_batch_size])
    first_wall, first_cpu = clock.lap()
    clock = _Clock()
    result = run(test)
    wall, cpu = clock.lap()
    sys_share = clock.sys_share()
    queries = 2 * len(test)
    return {
        "side": "pykeen", "task": "eval", "threads": torch.get_num_threads(),
        "test_digest": _digest(test), "entities": model.num_entities, "test_triples": len(test),
        "queries": queries, "mrr": float(result.get_metric("both.realistic.inverse_harmonic_mean_rank")),
        "setup_s": setup_s, "filter_prep_s_per_call": filter_s, "slice_size": args.pykeen_slice_size,
        "first_call_wall_s": first_wall, "first_call_cpu_s": first_cpu,
        "eval_wall_s": wall, "eval_cpu_s": cpu, "sys_share": sys_share,
        "queries_per_s_wall": queries / wall, "queries_per_s_cpu": queries / cpu,
        "rss_before_eval_mib": rss_before, "peak_rss_mib": _peak_rss_mib(),
    }


SIDES = {("kgsearch", "train"): kgsearch_train, ("kgsearch", "eval"): kgsearch_eval,
         ("pykeen", "train"): pykeen_train, ("pykeen", "eval"): pykeen_eval}


# -- orchestration (kgsearch venv) ---------------------------------------------------------------------
def _write_exchange(dataset, path: Path) -> None:
    np.savez(path, entities=np.array(dataset.entities), relations=np.array(dataset.relations),
             train=dataset.train.long().numpy(), valid=dataset.valid.long().numpy(),
             test=dataset.test.long().numpy())


def _default_slice_size(args: argparse.Namespace) -> int:
    """Entities per PyKEEN score slice: a [batch, slice, dim] complex64 block of 2^22 elements (32 MiB).
    PyKEEN's own default (every entity at once) needs 3.7 GB per temporary at batch 128, dim 250; among
    slices 32 / 128 / 524 / 2048 a probe here found ~128 (this size) the fastest, by ~15 % over 524."""
    return max(1, (1 << 22) // (args.eval_batch_size * args.dim))


def _forwarded(args: argparse.Namespace) -> list[str]:
    keys = ("threads", "seed", "dim", "negatives", "batch_size", "lr", "gamma", "adversarial_temperature",
            "warmup_epochs", "epochs", "train_dataset", "eval_dataset", "data_root", "limit", "eval_batch_size",
            "pykeen_slice_size")
    out = []
    for key in keys:
        value = getattr(args, key)
        if value is not None:
            out += [f"--{key.replace('_', '-')}", str(value)]
    return out


def _run_side(python: str, side: str, task: str, args: argparse.Namespace, extra: list[str],
              env_extra: dict[str, str | None], label: str) -> dict:
    """One measurement in a fresh process; env_extra values of None remove that variable."""
    from kgsearch.errors import KGSearchError

    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads),
           "PYTHONWARNINGS": "ignore"}
    for key, value in env_extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    cmd = [python, str(Path(__file__).resolve()), "--side", side, "--task", task, *_forwarded(args), *extra]
    print(f"[vs_pykeen] {label} ...", file=sys.stderr, flush=True)
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-25:])
        raise KGSearchError(f"{label} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    result = json.loads(lines[-1][len(RESULT_PREFIX):])
    print(f"[vs_pykeen] {label} done in {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    return result


def _fmt(x: float) -> str:
    return f"{x:,.1f}" if x < 100 else f"{x:,.0f}"


def _table(results: dict, args: argparse.Namespace) -> str:
    rows = ["| measurement | kgsearch | PyKEEN 1.11.1 | kgsearch ÷ PyKEEN |", "|---|---:|---:|---:|"]

    def row(name: str, ours: float, theirs: float, higher_better: bool | None = True) -> None:
        if higher_better is None:  # a share, not a rate: a ratio would mean nothing
            rows.append(f"| {name} | {_fmt(ours)} | {_fmt(theirs)} | – |")
            return
        ratio = ours / theirs if theirs else float("nan")
        note = "" if higher_better else " (lower is better)"
        rows.append(f"| {name} | {_fmt(ours)} | {_fmt(theirs)} | {ratio:.2f}×{note} |")

    kt, pt = results.get("kgsearch_train"), results.get("pykeen_train")
    if kt and pt:
        row("train: positives/s (wall)", kt["positives_per_s_wall"], pt["positives_per_s_wall"])
        row("train: positives/s (CPU time)", kt["positives_per_s_cpu"], pt["positives_per_s_cpu"])
        row(f"train: epoch wall s (median; kgsearch {kt['positives_per_epoch']:,} positives, "
            f"PyKEEN {pt['positives_per_epoch']:,})", kt["median_epoch_wall_s"], pt["median_epoch_wall_s"], False)
        row("train: kernel share of CPU time, %", 100 * kt["sys_share"], 100 * pt["sys_share"], None)
        row("train: peak RSS MiB", kt["peak_rss_mib"], pt["peak_rss_mib"], False)
    kf = results.get("kgsearch_train_filtered")
    if kf and pt:
        row("train, kgsearch filter_negatives=true: positives/s (CPU)", kf["positives_per_s_cpu"],
            pt["positives_per_s_cpu"])
    pe = results.get("pykeen_eval")
    for key, tag in (("kgsearch_eval_eager", "eval KGSEARCH_COMPILE=0"),
                     ("kgsearch_eval_chunk", f"eval KGSEARCH_COMPILE=0, what-if _CHUNK_ELEMENTS={args.chunk_probe}"),
                     ("kgsearch_eval_default", "eval default"),
                     ("kgsearch_eval_fused_direct", "eval fused.py called directly")):
        ke = results.get(key)
        if not (ke and pe):
            continue
        if key in ("kgsearch_eval_default", "kgsearch_eval_fused_direct"):
            tag += f" (compiled path {'used' if ke['fused_path_used'] else 'NOT used'})"
        row(f"{tag}: queries/s (wall)", ke["queries_per_s_wall"], pe["queries_per_s_wall"])
        row(f"{tag}: queries/s (CPU time)", ke["queries_per_s_cpu"], pe["queries_per_s_cpu"])
        row(f"{tag}: first call s (wall, {2 * args.eval_batch_size} queries)", ke["first_call_wall_s"],
            pe["first_call_wall_s"], False)
        row(f"{tag}: kernel share of CPU time, %", 100 * ke["sys_share"], 100 * pe["sys_share"], None)
        row(f"{tag}: peak RSS MiB", ke["peak_rss_mib"], pe["peak_rss_mib"], False)
    return "\n".join(rows)


def _checks(results: dict) -> list[str]:
    notes = []
    kt, pt = results.get("kgsearch_train"), results.get("pykeen_train")
    if kt and pt:
        same = kt["train_digest"] == pt["train_digest"]
        notes.append(f"train triples identical: {same} ({kt['train_digest']})")
        for side in (kt, pt):
            notes.append(f"{side['side']} training settings: " + json.dumps(side["settings"]))
    pe = results.get("pykeen_eval")
    for key in ("kgsearch_eval_eager", "kgsearch_eval_chunk", "kgsearch_eval_default", "kgsearch_eval_fused_direct"):
        ke = results.get(key)
        if ke and pe:
            notes.append(f"{key}: test triples identical to PyKEEN's: {ke['test_digest'] == pe['test_digest']} "
                         f"({ke['test_triples']} triples, {ke['queries']} vs {pe['queries']} queries, "
                         f"{ke['entities']} vs {pe['entities']} candidate entities); random-model MRR "
                         f"{ke['mrr']:.5f} vs {pe['mrr']:.5f} (different inits and distances: not comparable)")
    eager = results.get("kgsearch_eval_eager")
    for key in ("kgsearch_eval_chunk", "kgsearch_eval_default", "kgsearch_eval_fused_direct"):
        ke = results.get(key)
        if ke and eager:
            notes.append(f"{key} MRR equals the eager one (same model, same queries): "
                         f"{abs(ke['mrr'] - eager['mrr']) < 1e-6} ({ke['mrr']:.7f} vs {eager['mrr']:.7f})")
    return notes


def orchestrate(args: argparse.Namespace) -> None:
    from kgsearch.data import load
    from kgsearch.errors import KGSearchError

    for flag in ("threads", "dim", "negatives", "batch_size", "epochs", "eval_batch_size"):
        if getattr(args, flag) <= 0:
            raise KGSearchError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.warmup_epochs < 0 or args.limit < 0:
        raise KGSearchError("--warmup-epochs and --limit must be >= 0")
    python = args.pykeen_python
    if not Path(python).is_file():
        raise KGSearchError(f"--pykeen-python {python}: no such interpreter (PyKEEN's venv, e.g. "
                            f".venv-pykeen/bin/python)")
    if args.pykeen_slice_size is None:
        args.pykeen_slice_size = _default_slice_size(args)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="vs_pykeen_") as tmp:
        if args.only in (None, "train"):
            exchange = Path(tmp) / "train.npz"
            _write_exchange(load(args.train_dataset, data_root=args.data_root), exchange)
            results["kgsearch_train"] = _run_side(sys.executable, "kgsearch", "train", args, [], {},
                                                  "kgsearch training")
            if args.kgsearch_filtered_too:
                results["kgsearch_train_filtered"] = _run_side(
                    sys.executable, "kgsearch", "train", args, ["--kgsearch-filter-negatives"], {},
                    "kgsearch training (filter_negatives=true)")
            results["pykeen_train"] = _run_side(python, "pykeen", "train", args, ["--exchange", str(exchange)], {},
                                                "PyKEEN training")
        if args.only in (None, "eval"):
            exchange = Path(tmp) / "eval.npz"
            _write_exchange(load(args.eval_dataset, data_root=args.data_root), exchange)
            results["kgsearch_eval_eager"] = _run_side(sys.executable, "kgsearch", "eval", args, [],
                                                       {"KGSEARCH_COMPILE": "0"}, "kgsearch eval (eager)")
            if args.chunk_probe:
                results["kgsearch_eval_chunk"] = _run_side(
                    sys.executable, "kgsearch", "eval", args, ["--chunk-elements", str(args.chunk_probe)],
                    {"KGSEARCH_COMPILE": "0"}, f"kgsearch eval (eager, chunk {args.chunk_probe})")
            # The default: KGSEARCH_COMPILE unset whatever the caller's shell says; a fresh inductor cache per
            # run unless asked otherwise, so the first call pays the cold compile.
            for key, label, extra in (("kgsearch_eval_default", "kgsearch eval (default)", []),
                                      ("kgsearch_eval_fused_direct", "kgsearch eval (fused.py called directly)",
                                       ["--fused-direct"])):
                if extra and (results["kgsearch_eval_default"]["fused_path_used"] or args.no_fused_direct):
                    continue  # match_all already routes to the fused path: nothing extra to measure
                env: dict[str, str | None] = {"KGSEARCH_COMPILE": None}
                if not args.warm_compile_cache:
                    env["TORCHINDUCTOR_CACHE_DIR"] = str(Path(tmp) / f"inductor-{key}")
                results[key] = _run_side(sys.executable, "kgsearch", "eval", args, extra, env, label)
            results["pykeen_eval"] = _run_side(python, "pykeen", "eval", args, ["--exchange", str(exchange)], {},
                                               "PyKEEN eval")
    meta = {"torch": torch.__version__, "threads": args.threads, "cpu_count": os.cpu_count(),
            "command": " ".join([Path(sys.executable).name, *sys.argv])}
    _report(meta, results, args)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"meta": meta, "args": vars(args), "results": results},
                                                  indent=2, default=str))


def _report(meta: dict, results: dict, args: argparse.Namespace) -> None:
    print(f"# kgsearch vs PyKEEN 1.11.1 ({json.dumps(meta)})\n")
    print(_table(results, args))
    print()
    for note in _checks(results):
        print("- " + note)


def report_from_json(path: str) -> None:
    """Re-print the table of a saved --json-out run (no measuring)."""
    from kgsearch.errors import KGSearchError

    try:
        saved = json.loads(Path(path).read_text())
        meta, results, args = saved["meta"], saved["results"], argparse.Namespace(**saved["args"])
    except (OSError, ValueError, KeyError) as exc:
        raise KGSearchError(f"--table-from {path}: not a saved vs_pykeen run ({exc})") from None
    _report(meta, results, args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pykeen-python", default=str(REPO / ".venv-pykeen" / "bin" / "python"),
                   help="interpreter of the venv that has PyKEEN (never installed into kgsearch's)")
    p.add_argument("--threads", type=int, default=1, help="torch threads on both sides")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=("train", "eval"), help="run one of the two benchmarks")
    p.add_argument("--json-out", help="also write every raw measurement to this JSON file")
    p.add_argument("--table-from", metavar="JSON", help="only re-print the table of a saved --json-out run")
    g = p.add_argument_group("training (RotatE, NSSA loss)")
    g.add_argument("--train-dataset", default="umls")
    g.add_argument("--dim", type=int, default=250, help="complex dimension (training and evaluation)")
    g.add_argument("--negatives", type=int, default=64, help="uniform random negatives per positive")
    g.add_argument("--batch-size", type=int, default=512, help="positives per batch")
    g.add_argument("--lr", type=float, default=0.001)
    g.add_argument("--gamma", type=float, default=12.0, help="NSSA margin")
    g.add_argument("--adversarial-temperature", type=float, default=1.0)
    g.add_argument("--warmup-epochs", type=int, default=1)
    g.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up")
    g.add_argument("--kgsearch-filtered-too", action="store_true",
                   help="extra row: kgsearch with its default filter_negatives=true")
    g = p.add_argument_group("evaluation (random RotatE, filtered, both directions)")
    g.add_argument("--eval-dataset", default="fb15k-237")
    g.add_argument("--data-root", default=os.environ.get("KGSEARCH_DATA_ROOT", str(REPO.parent / "shared" / "datasets")))
    g.add_argument("--limit", type=int, default=1000, help="first N test triples (0: all)")
    g.add_argument("--eval-batch-size", type=int, default=128, help="queries per scoring call on both sides")
    g.add_argument("--pykeen-slice-size", type=int,
                   help="entities per PyKEEN score slice (default: a 32 MiB complex64 block, ~128 here)")
    g.add_argument("--chunk-probe", type=int, default=0, metavar="ELEMENTS",
                   help="extra what-if row: kgsearch eager with kgsearch.models.kge._CHUNK_ELEMENTS set to this")
    g.add_argument("--no-fused-direct", action="store_true",
                   help="when the default run did not use the fused path, do not measure fused.py called directly")
    g.add_argument("--warm-compile-cache", action="store_true",
                   help="keep the default inductor cache (default: a fresh one, so compile time is cold)")
    # internal: one measurement in this process
    p.add_argument("--side", choices=("kgsearch", "pykeen"), help=argparse.SUPPRESS)
    p.add_argument("--task", choices=("train", "eval"), help=argparse.SUPPRESS)
    p.add_argument("--exchange", help=argparse.SUPPRESS)
    p.add_argument("--kgsearch-filter-negatives", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--fused-direct", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--chunk-elements", type=int, default=0, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.side:
        torch.set_num_threads(args.threads)
        _emit(SIDES[(args.side, args.task)](args))
        return
    from kgsearch.errors import cli_entry

    cli_entry(lambda: report_from_json(args.table_from) if args.table_from else orchestrate(args))()


if __name__ == "__main__":
    main()
