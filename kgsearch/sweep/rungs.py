"""The rung plan of `scheduler: {type: grash}` (kgsearch.sweep.grash): how many rungs, how many configurations
each trains, and at what fidelity. Arithmetic only (no Ray, no data), so `--dry-run` can print it.

GraSH (Kochsiek et al. 2022) is successive halving whose low fidelities are small graphs and few epochs,
with the search's cost stated in full-run equivalents (one full run = `max_t` epochs on the whole graph):

* `num_samples` configurations start at rung 0; R = ceil(log_eta(num_samples)) rungs (at least 1);
  rung i+1 trains the best ceil(n_i / eta) of rung i's n_i, from scratch.
* Every rung costs `budget` / R: each of its runs is f_i = budget / (R n_i) of a full run (at most 1).
  `variant` says what a run saves on: `graph` trains max_t epochs on a subgraph holding f_i of the training
  triples, `epoch` the whole graph for f_i max_t epochs, `combined` (GraSH's default) both, sqrt(f_i) each.
* A run's cost is taken as its share of the training triples times its share of max_t epochs: per triple,
  the trainers here score a fixed number of negatives (a 1-N scorer's cost also grows with the entities,
  which a subgraph has fewer of, so there it is an upper bound).

GraSH's last round, one full run of the winner, is the sweep's re-training here (kgsearch.sweep.retrain:
the top-k at full length with seeds), which comes on top of the budget.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

VARIANTS = ("combined", "graph", "epoch")


@dataclass(frozen=True)
class Rung:
    index: int
    configs: int  # configurations it trains
    fidelity: float  # each run's planned cost in full-run equivalents (graph x epochs / max_t), at most 1
    graph: float  # the share of the training triples its subgraph is asked to hold (1: the whole graph)
    epochs: int  # epochs each run trains

    def cost(self, max_t: int, graph_share: float | None = None) -> float:
        """The rung's cost in full-run equivalents, with its epochs as rounded and the subgraph's actual
        share of the training triples (`graph_share`, default the one asked for)."""
        return self.configs * (self.graph if graph_share is None else graph_share) * self.epochs / max_t


def rung_count(num_samples: int, eta: int) -> int:
    """R = ceil(log_eta(num_samples)), at least 1 (integer arithmetic: no float log at exact powers)."""
    count = 0
    while eta ** count < num_samples:
        count += 1
    return max(1, count)


def promoted(configs: int, eta: int) -> int:
    """How many of a rung's configurations go on to the next: the top 1/eta, at least one."""
    return max(1, -(-configs // eta))


def plan_rungs(num_samples: int, eta: int, budget: float, variant: str, max_t: int) -> list[Rung]:
    """The rungs (module docstring)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant {variant!r}: expected one of {', '.join(VARIANTS)}")
    count = rung_count(num_samples, eta)
    rungs, configs = [], num_samples
    for i in range(count):
        fidelity = min(1.0, budget / (count * configs))
        graph, epoch_share = {"combined": (math.sqrt(fidelity), math.sqrt(fidelity)), "graph": (fidelity, 1.0),
                              "epoch": (1.0, fidelity)}[variant]
        epochs = min(max_t, max(1, math.floor(max_t * epoch_share + 0.5)))
        rungs.append(Rung(index=i, configs=configs, fidelity=fidelity, graph=graph, epochs=epochs))
        configs = promoted(configs, eta)
    return rungs


def grash_problems(model: str, data_kind: str, retrain_on: bool, retrain_section: tuple[str, ...]
                   ) -> list[tuple[tuple[str, ...], str]]:
    """(key path, reason) of each reason a sweep cannot use `scheduler: {type: grash}` (kgsearch.sweep.validate)."""
    out = []
    if data_kind != "static":
        out.append((("scheduler", "type"), f"grash trains its low rungs on subgraphs of a static graph; model "
                                           f"{model!r} trains on {data_kind} data: use asha or fifo"))
    if not retrain_on:
        out.append((retrain_section + ("top_k",), "grash ends with the re-training of its winners (its rungs train "
                                                  "on subgraphs or for fewer epochs, so no search trial is a full run "
                                                  "to export): top_k must be at least 1, and --no-retrain cannot be used"))
    return out


def rung_lines(rungs: list[Rung], max_t: int, shares: list[float] | None = None) -> list[str]:
    """One line per rung: its configurations, graph share, epochs and cost; then the total."""
    shares = shares or [r.graph for r in rungs]
    lines = []
    for r, share in zip(rungs, shares):
        graph = "the whole graph" if share >= 1 else f"{100 * share:.1f}% of the training triples (k-core subgraph)"
        lines.append(f"  rung {r.index}: {r.configs} configuration(s) x {r.epochs}/{max_t} epochs on {graph}"
                     f" = {r.cost(max_t, share):.2f} full runs")
    total = sum(r.cost(max_t, s) for r, s in zip(rungs, shares))
    lines.append(f"  search: {total:.2f} full-run equivalents ({max_t} epochs on the whole graph each)")
    return lines


__all__ = ["VARIANTS", "Rung", "grash_problems", "plan_rungs", "promoted", "rung_count", "rung_lines"]
