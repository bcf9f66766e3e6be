"""Train the plain path-based GNN base (kgsearch/models/nbfnet.py) and report filtered MRR / Hits, time, memory.

    python bench/nbfnet_umls.py                                    # UMLS (bundled), the defaults below
    python bench/nbfnet_umls.py --dataset family --data-root ../shared/datasets --max-batches 20

Adam on every training triple in both directions (a head query is (t, r + R, ?)), batches of queries
each with its own query edge removed; validation every `--eval-every` epochs, and the best-validation
state is tested on the full test split. Per epoch it prints the loss, wall and CPU seconds
(time.process_time) and the peak RSS so far. `--max-batches N` times only the first N batches of an
epoch and extrapolates the epoch (cost measurement on larger graphs; no evaluation then).
`--compare-kernels` times one layer's message passing (forward + backward) three ways and exits: the
factorised sparse matmul the model uses, PyG's `MessagePassing`, and index_select / index_add_.

Losses: `softmax` = 1-vs-all cross-entropy over all entities (other true training answers of the query
masked out with `--filtered`); `bce` = NBFNet's binary cross-entropy on the answer and `--negatives`
sampled entities (true training answers excluded), self-adversarially weighted at `--adv-temp`.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time

import torch
from torch.nn import functional as F

from kgsearch.data import load
from kgsearch.evaluation import FilterIndex, both_directions, evaluate_static, static_filter
from kgsearch.models.nbfnet import NBFNet


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def bce_loss(logits, target, truth_rows, truth_cols, negatives, adv_temp, generator):
    """NBFNet's loss: −log σ(s⁺) − Σ_k p_k log σ(−s⁻_k), p = softmax(s⁻ / T) (detached) over sampled negatives."""
    b, n = logits.shape
    is_true = torch.zeros(b, n, dtype=torch.bool)
    is_true[truth_rows, truth_cols] = True
    neg = torch.randint(0, n, (b, negatives), generator=generator)
    neg_logit = logits.gather(1, neg)
    valid = ~is_true.gather(1, neg)  # strict negatives: a sampled true answer counts for nothing
    weight = torch.softmax((neg_logit / adv_temp).detach().masked_fill(~valid, float("-inf")), 1).nan_to_num(0.0)
    pos = logits.gather(1, target[:, None]).squeeze(1)
    return (F.softplus(-pos) + (weight * F.softplus(neg_logit)).sum(1)).mean()


def softmax_loss(logits, target, truth_rows, truth_cols, filtered):
    if filtered:  # the query's other true training answers are not negatives
        other = truth_cols != target[truth_rows]
        logits = logits.index_put((truth_rows[other], truth_cols[other]), torch.tensor(float("-inf")))
    return F.cross_entropy(logits, target)


def compare_kernels(dataset, batch, dim, repeats=5):
    """ms per layer (min of `repeats`, CPU time) of Σ_{(j,r,i)} x_j ⊙ w_r for B queries, forward + backward."""
    from torch_geometric.nn import MessagePassing

    from kgsearch.models.nbfnet import RelGraph, _PairSum

    g = RelGraph.from_triples(dataset.train, dataset.num_entities, dataset.num_relations)
    n, f = dataset.num_entities, batch * dim
    x = torch.randn(n, f, requires_grad=True)
    w = torch.randn(2 * dataset.num_relations, f, requires_grad=True)

    class Edgewise(MessagePassing):
        def __init__(self):
            super().__init__(aggr="add", node_dim=0)

        def forward(self, x, w, edge_index, rel):
            return self.propagate(edge_index, x=x, w=w, rel=rel, size=(n, n))

        def message(self, x_j, w, rel):
            return x_j * w.index_select(0, rel)

    pyg, edge_index = Edgewise(), torch.stack([g.src, g.dst])
    kernels = {
        "factorised_spmm": lambda: x.new_zeros(n, f).index_add_(
            0, g.pair_dst, _PairSum.apply(x, g.adj, g.adj_t) * w.index_select(0, g.pair_rel)),
        "pyg_message_passing": lambda: pyg(x, w, edge_index, g.rel),
        "index_add": lambda: x.new_zeros(n, f).index_add_(0, g.dst, x.index_select(0, g.src) * w.index_select(0, g.rel)),
    }
    out = {"edges": g.num_edges, "pairs": len(g.pair_rel), "batch": batch, "dim": dim}
    for name, fn in kernels.items():
        times = []
        for _ in range(repeats + 1):
            start = time.process_time()
            fn().sum().backward()
            times.append(time.process_time() - start)
        out[f"{name}_ms"] = round(1000 * min(times[1:]), 1)
    return out


def evaluate(model, dataset, split, filt, batch_size):
    model.eval()
    acc = evaluate_static(model.score_all, getattr(dataset, split), dataset.num_entities, dataset.num_relations,
                          filt, batch_size=batch_size)
    model.train()
    return acc.result()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="umls")
    parser.add_argument("--data-root")
    parser.add_argument("--dim", type=int, default=32)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--independent", action="store_true", help="free per-layer relation vectors, not w_r(q)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--edge-drop", type=float, default=0.25,
                        help="fraction of graph edges dropped per batch (shared by the batch), besides the query edges")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--eval-every", type=int, default=1)
    parser.add_argument("--loss", choices=("softmax", "bce"), default="softmax")
    parser.add_argument("--filtered", action="store_true", help="softmax: mask other true training answers")
    parser.add_argument("--negatives", type=int, default=32)
    parser.add_argument("--adv-temp", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batches", type=int, default=0, help="time this many batches of one epoch, then stop")
    parser.add_argument("--eval-batch", type=int, default=64)
    parser.add_argument("--patience", type=int, default=0, help="stop after this many evaluations without a better MRR")
    parser.add_argument("--propagation", choices=("auto", "full", "progressive"), default="auto")
    parser.add_argument("--compare-kernels", action="store_true", help="time one layer's message passing, then exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)

    dataset = load(args.dataset, data_root=args.data_root)
    if args.compare_kernels:
        print(json.dumps(compare_kernels(dataset, args.batch, args.dim)), flush=True)
        return
    n, r = dataset.num_entities, dataset.num_relations
    model = NBFNet(n, r, args.dim, args.layers, triples=dataset.train, dependent=not args.independent,
                   dropout=args.dropout, propagation=args.propagation)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    anchor, rel, target = both_directions(dataset.train.long(), r)
    truth = FilterIndex.build(anchor * (2 * r) + rel, target)
    filt = static_filter(dataset)
    graph = model.graph
    print(json.dumps({"args": vars(args), "propagation": model.propagation, "entities": n, "relations": r,
                      "edges": graph.num_edges,
                      "pairs": len(graph.pair_rel), "queries": len(anchor),
                      "parameters": sum(p.numel() for p in model.parameters())}), flush=True)

    best, best_state, since_best, total_wall, total_cpu = -1.0, None, 0, 0.0, 0.0
    for epoch in range(1, args.epochs + 1):
        wall, cpu = time.perf_counter(), time.process_time()
        perm = torch.randperm(len(anchor), generator=gen)
        batches = perm.split(args.batch)
        if args.max_batches:
            batches = batches[:args.max_batches]
        total_loss = 0.0
        for idx in batches:
            a, q, t = anchor[idx], rel[idx], target[idx]
            g = graph
            if args.edge_drop:
                g = graph.with_weights((torch.rand(graph.num_edges, generator=gen) >= args.edge_drop).float())
            logits = model(a, q, t, graph=g)
            rows, cols = truth.lookup(a * (2 * r) + q)
            if args.loss == "softmax":
                loss = softmax_loss(logits, t, rows, cols, args.filtered)
            else:
                loss = bce_loss(logits, t, rows, cols, args.negatives, args.adv_temp, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        line = {"epoch": epoch, "loss": round(total_loss / len(batches), 5), "wall_s": round(wall, 1),
                "cpu_s": round(cpu, 1), "peak_rss_mib": round(peak_rss_mib())}
        if args.max_batches:
            full = len(perm.split(args.batch)) / len(batches)
            line.update(batches=len(batches), epoch_wall_s_est=round(wall * full, 1),
                        epoch_cpu_s_est=round(cpu * full, 1))
            print(json.dumps(line), flush=True)
            return
        total_wall, total_cpu = total_wall + wall, total_cpu + cpu
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            ev_wall, ev_cpu = time.perf_counter(), time.process_time()
            metrics = evaluate(model, dataset, "valid", filt, args.eval_batch)
            line.update({f"val_{k}": round(v, 4) for k, v in metrics.items() if k != "count"},
                        eval_wall_s=round(time.perf_counter() - ev_wall, 1),
                        eval_cpu_s=round(time.process_time() - ev_cpu, 1))
            total_wall += time.perf_counter() - ev_wall
            total_cpu += time.process_time() - ev_cpu
            if metrics["mrr"] > best:
                best, best_state, since_best = metrics["mrr"], copy.deepcopy(model.state_dict()), 0
                line["best"] = True
            else:
                since_best += 1
        print(json.dumps(line), flush=True)
        if args.patience and since_best >= args.patience:
            break
    model.load_state_dict(best_state)
    test = evaluate(model, dataset, "test", filt, args.eval_batch)
    print(json.dumps({"best_val_mrr": round(best, 4), **{f"test_{k}": round(v, 4) if isinstance(v, float) else v
                                                         for k, v in test.items()},
                      "run_wall_s": round(total_wall, 1), "run_cpu_s": round(total_cpu, 1),
                      "peak_rss_mib": round(peak_rss_mib())}), flush=True)


if __name__ == "__main__":
    main()
