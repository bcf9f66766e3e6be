"""DANS-KGC as a kgsearch Recipe: config, once-per-dataset preparation, training epochs, evaluation."""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, Literal

import torch

from kgsearch.cache import cached, one_thread
from kgsearch.dans.diffusion import band_steps
from kgsearch.dans.difficulty import (DIFFICULTY_RESCALES, DIFFICULTY_TARGETS, fit_difficulty, kmeans_types,
                                     rescale_target, structural_features)
from kgsearch.dans.graph import neighbour_csr
from kgsearch.dans.model import DansModel
from kgsearch.dans.negatives import TrueAnswers
from kgsearch.dans.pretrain import PretrainSettings, dataset_fingerprint, load_pretrained, pretrain
from kgsearch.errors import KGSearchError
from kgsearch.evaluation import RankAccumulator, both_directions, evaluate_static, static_filter
from kgsearch.models.kge import MARGIN_SCORERS, SCORERS
from kgsearch.models.nbfnet import NBFNet
from kgsearch.precision import use_bf16
from kgsearch.progress import ProgressFactory, silent
from kgsearch.sharding import epoch_seed, epoch_shard


LR_SCHEDULES = ("constant", "cosine", "step")
BASE_SCORERS = (*SCORERS, NBFNet.name)


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Learning-rate multiplier for 1-based `epoch` (a function of the epoch only, so resuming is exact)."""
    progress = (epoch - 1) / max(epochs, 1)
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    if schedule == "step":
        return 0.1 if progress >= 0.5 else 1.0
    return 1.0


@dataclass
class DansConfig:
    # -- run -------------------------------------------------------------------------------------
    seed: int = 0                      # seeds init, permutations, negatives and diffusion noise
    pretrain_seed: int = 0             # seeds the once-per-dataset preparation (pre-training, sampled structure,
                                       # DAM, K-means), so runs of several seeds share one preparation
    epochs: int = 100                  # E_max: training epochs (τ_e = e / E_max, Eq. 14)
    eval_every: int = 10               # validate every this many epochs
    patience: int = 0                  # stop after this many validations without a new best (0: never)
    eval_batch_size: int = 256         # queries per evaluation chunk
    # -- base scorer (Eq. 15/17 use its distance S) ----------------------------------------------
    scorer: str = "rotate"             # base scorer S(h, r, t): rotate | transe | distmult | complex (margin losses,
                                       # Eq. 15-17) | complex_n3 (1-vs-all cross-entropy + N3, reciprocal relations)
                                       # | nbfnet (path-based GNN, 1-vs-all cross-entropy)
    dim: int = 200                     # embedding dim (complex dim for rotate/complex: 2·dim reals; GNN state width)
    gamma: float = 12.0                # γ_base: base margin of the logistic margin losses (Eq. 16–17)
    lr: float = 0.001                  # learning rate of `optimizer`
    optimizer: Literal["adam", "adagrad"] = "adam"  # the scorer's (Adagrad: what ComplEx-N3 is tuned for)
    denoiser_lr: float | None = None   # Adam learning rate of the denoiser; None: `lr` (set it with Adagrad's lr ~0.1)
    n3_weight: float = 0.0             # complex_n3: weight of the N3 regulariser (Lacroix et al. 2018)
    init_scale: float = 1e-3           # complex_n3: std of the normal initial embeddings
    # -- path-based GNN base (scorer: nbfnet, kgsearch/models/nbfnet.py; `dim` is its state width) -
    layers: int = 6                    # Bellman-Ford layers: the longest path a score can follow
    dependent: bool = True             # relation vectors projected from the query relation (NBFNet) or a free table
    message: Literal["distmult", "transe"] = "distmult"  # x_j ⊙ w_r or x_j + w_r (transe: full propagation only)
    aggregate: Literal["sum", "mean"] = "sum"  # over a node's in-edges (mean: ÷ its in-degree)
    gnn_dropout: float = 0.0           # dropout inside each layer's update
    edge_drop: float = 0.25            # share of the graph's edges dropped for each training batch (not at evaluation)
    propagation: Literal["auto", "full", "progressive"] = "auto"  # auto: the cheaper pass for the graph
    lr_schedule: str = "constant"      # constant | cosine (to 0 at E_max) | step (÷10 after half the epochs, as RotatE)
    batch_size: int = 512              # positive queries per batch (both directions of train triples)
    negatives: int = 128               # random-replacement negatives per positive (L_KGC2, Eq. 17)
    adversarial_temperature: float = 0.0  # 0: Eq. 17's plain mean over negatives; >0: RotatE self-adversarial
    filter_negatives: bool = True      # drop random negatives that are training facts (RotatE's sampler)
    # -- ablation switches -----------------------------------------------------------------------
    dans: bool = True                  # false: plain base scorer with random negatives only (baseline)
    dfs: bool = True                   # false: one linear noise schedule for all entities (w/o DFS)
    ccd: bool = True                   # false: no type / neighbour condition in the denoiser (w/o CCD)
    dtm: bool = True                   # false: fixed equal band weights and fixed margin (w/o DTM)
    # -- ANS: diffusion (Eq. 2–13) ---------------------------------------------------------------
    diffusion_steps: int = 100         # T: diffusion steps (bands at T/20, T/10, T/5, T/2)
    sampling_steps: int = 4            # reverse-chain jumps run per batch (strided; 4 = one per band, T→T/2→T/5→T/10→T/20;
                                       # ≥ T−T/20 = the full chain). 4 matched 8 in quality at half the cost (docs/benchmarks_dans.md)
    reverse_step: Literal["ddpm", "posterior"] = "ddpm"  # a strided reverse jump (diffusion.ddpm_step): DDPM's
                                       # variance β', x̂_0 clipped at 10x the answers' range; or the posterior variance,
                                       # x̂_0 clipped to that range: stable at any noise, +0.002 val on UMLS, but it loses
                                       # DANS's Family gain (-0.007 val, seed 0; docs/benchmarks_dans.md)
    beta_init: float = 0.0001          # β_init: noise variance at the first step (Eq. 3)
    beta_low: float = 0.01             # β_low: minimum noise upper bound, for the easiest entity (Eq. 2)
    beta_global: float = 0.1           # β_global: global maximum noise level (Eq. 2)
    mu: float = 1.0                    # μ: influence of the difficulty ζ on the noise bound (Eq. 2)
    denoiser_hidden: int = 0           # hidden width of the denoiser MLP (Eq. 10); 0: max(128, entity width)
    time_dim: int = 32                 # size of the sinusoidal timestep embedding emb(t) (Eq. 7, 10)
    gen_fraction: float = 0.25         # share of each batch's positives that get generated negatives
    gen_negatives: int = 2             # generated negatives (parallel reverse chains) per such positive
    diffusion_rows: Literal["all", "generated"] = "all"  # rows L_Diff trains the denoiser on: the whole
                                       # batch (paper) or only those that get generated negatives, which
                                       # cuts the denoiser's training cost by 1 / gen_fraction
    num_clusters: int = 10             # K: K-means entity types for x_type (CCD)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # denoiser matmuls (L_Diff, reverse chain); auto =
                                       # bf16 where the CPU (avx512_bf16/AMX) or GPU has it, else fp32
    score_precision: Literal["auto", "fp32", "bf16"] = "fp32"  # the 1-vs-all score matmul of the softmax
                                       # bases in training (evaluation stays fp32): bf16 halves a ComplEx-N3
                                       # batch on WN18RR (1.55 -> 0.80 CPU-s), where that matmul is the step
    # -- DTM (Eq. 14–18) -------------------------------------------------------------------------
    curriculum_lambda: float = 5.0     # λ: sharpness of the band-weight softmax (Eq. 14)
    curriculum_zeta: float = 0.5       # ζ ∈ (0, 1]: smoothness exponent of Eq. 14
    margin_increment: float = 0.5      # β ∈ [0, 1]: dynamic margin increment (Eq. 16)
    eta: float = 0.25                  # η: weight of L_KGC1 against L_KGC2 (Eq. 18)
    # -- DAM (Eq. 1) -----------------------------------------------------------------------------
    difficulty_target: str = "mean_rank"  # what the Eq. 1 MLP regresses (paper leaves it open): mean_rank | degree
    difficulty_rescale: str = "quantile"  # spread of that target before fitting: quantile | minmax | none
    dam_hidden: int = 64               # hidden width of the difficulty MLP W1 (Eq. 1)
    dam_epochs: int = 300              # full-batch training steps of the difficulty MLP
    dam_lr: float = 0.01               # Adam learning rate of the difficulty MLP
    dam_rank_queries: int = 200_000    # mean_rank target: rank at most this many training queries, each
                                       # entity keeping up to a common cap of those it answers (0: all);
                                       # binds on FB15k-237 (544k), not on UMLS, Family or WN18RR (174k)
    structure_samples: int = 256       # k for sampled betweenness / closeness on large graphs
    structure_exact_max_nodes: int = 2000  # graphs up to this size get exact betweenness / closeness
    # -- pre-training for e_sem and K-means (fixed per sweep) ------------------------------------
    pretrain_scorer: str = "rotate"    # scorer pre-trained for the semantic features e_sem
    pretrain_dim: int = 64             # its embedding dim
    pretrain_gamma: float = 6.0        # its margin
    pretrain_lr: float = 0.005         # its Adam learning rate
    pretrain_epochs: int = 30          # its training epochs
    pretrain_batch_size: int = 512     # its batch size
    pretrain_negatives: int = 64       # its random negatives per positive
    pretrain_adversarial_temperature: float = 1.0  # its self-adversarial temperature α

    def validate(self) -> None:
        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ValueError(message)

        for name in ("epochs", "eval_every", "eval_batch_size", "dim", "batch_size", "negatives",
                     "sampling_steps", "time_dim", "gen_negatives", "num_clusters",
                     "dam_hidden", "dam_epochs", "structure_samples", "pretrain_dim", "pretrain_epochs",
                     "pretrain_batch_size", "pretrain_negatives"):
            need(getattr(self, name) > 0, f"{name} must be positive, got {getattr(self, name)}")
        need(self.scorer in BASE_SCORERS, f"scorer must be one of {sorted(BASE_SCORERS)}, got {self.scorer!r}")
        need(self.layers > 0, f"layers must be positive, got {self.layers}")
        need(not (self.message == "transe" and self.propagation == "progressive"),
             "message 'transe' needs propagation 'full' or 'auto' (x_j + w_r is not zero for an unreached x_j, "
             "so the frontier-only pass would differ)")
        need(0 <= self.edge_drop < 1 and 0 <= self.gnn_dropout < 1,
             f"edge_drop and gnn_dropout must be in [0, 1), got {self.edge_drop} and {self.gnn_dropout}")
        need(self.pretrain_scorer in MARGIN_SCORERS,  # pre-training uses the margin loss
             f"pretrain_scorer must be one of {sorted(MARGIN_SCORERS)}, got {self.pretrain_scorer!r}")
        need(self.n3_weight >= 0 and self.init_scale > 0, "n3_weight must be >= 0 and init_scale > 0")
        need(self.denoiser_lr is None or self.denoiser_lr > 0, f"denoiser_lr must be > 0, got {self.denoiser_lr}")
        need(self.lr_schedule in LR_SCHEDULES,
             f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {self.lr_schedule!r}")
        need(self.difficulty_rescale in DIFFICULTY_RESCALES,
             f"difficulty_rescale must be one of {list(DIFFICULTY_RESCALES)}, got {self.difficulty_rescale!r}")
        need(self.difficulty_target in DIFFICULTY_TARGETS,
             f"difficulty_target must be one of {sorted(DIFFICULTY_TARGETS)}, got {self.difficulty_target!r}")
        for name in ("gamma", "lr", "pretrain_gamma", "pretrain_lr", "dam_lr", "curriculum_lambda", "mu"):
            need(getattr(self, name) > 0, f"{name} must be > 0, got {getattr(self, name)}")
        need(self.adversarial_temperature >= 0 and self.pretrain_adversarial_temperature >= 0,
             "adversarial temperatures must be >= 0")
        need(self.diffusion_steps >= 20, f"diffusion_steps (T) must be >= 20 so that T/20 >= 1, "
                                         f"got {self.diffusion_steps}")
        need(len(set(band_steps(self.diffusion_steps))) == 4,
             f"diffusion_steps={self.diffusion_steps} gives coinciding band steps {band_steps(self.diffusion_steps)}")
        need(0 < self.beta_init, f"beta_init must be > 0, got {self.beta_init}")
        need(self.beta_init <= self.beta_low,
             f"need beta_init <= beta_low, got beta_init={self.beta_init} > beta_low={self.beta_low}")
        need(self.beta_low <= self.beta_global,
             f"need beta_low <= beta_global, got beta_low={self.beta_low} > beta_global={self.beta_global}")
        need(self.beta_global < 1, f"beta_global must be < 1 (a variance per step), got {self.beta_global}")
        need(0 < self.gen_fraction <= 1, f"gen_fraction must be in (0, 1], got {self.gen_fraction}")
        need(0 < self.curriculum_zeta <= 1, f"curriculum_zeta must be in (0, 1], got {self.curriculum_zeta}")
        need(0 <= self.margin_increment <= 1, f"margin_increment must be in [0, 1], got {self.margin_increment}")
        need(self.eta >= 0, f"eta must be >= 0, got {self.eta}")
        need(self.patience >= 0, f"patience must be >= 0, got {self.patience}")
        need(self.dam_rank_queries >= 0, f"dam_rank_queries must be >= 0 (0: all), got {self.dam_rank_queries}")
        need(self.denoiser_hidden >= 0, f"denoiser_hidden must be >= 0 (0: auto), got {self.denoiser_hidden}")
        need(self.score_precision == "fp32" or self.scorer == "complex_n3",
             f"score_precision {self.score_precision!r} applies to the all-entity product of scorer complex_n3 "
             f"only; scorer {self.scorer!r} needs score_precision fp32")

    def pretrain_settings(self) -> PretrainSettings:
        return PretrainSettings(
            scorer=self.pretrain_scorer, dim=self.pretrain_dim, gamma=self.pretrain_gamma, lr=self.pretrain_lr,
            epochs=self.pretrain_epochs, batch_size=self.pretrain_batch_size, negatives=self.pretrain_negatives,
            adversarial_temperature=self.pretrain_adversarial_temperature, seed=self.pretrain_seed)


def base_lrs(config: DansConfig) -> dict[str, float]:
    """Learning rates before the schedule, keyed like the optimizers."""
    return {"optimizer": config.lr, "denoiser_optimizer": config.denoiser_lr or config.lr}


def make_optimizers(config: DansConfig, model: DansModel) -> dict[str, torch.optim.Optimizer]:
    """The scorer's optimizer and, with DANS, the denoiser's (always Adam), keyed as in the state dict."""
    lrs = base_lrs(config)
    device = next(model.scorer.parameters()).device.type
    # torch's fused kernels: the same update, 6x faster a step on CPU (denoiser Adam 5.1 -> 0.76 ms,
    # FB15k-237's Adagrad 22 -> 3.8 ms); fused Adagrad has a CPU kernel only.
    adam = {"fused": device in ("cpu", "cuda")}
    if config.optimizer == "adagrad":
        scorer_opt = torch.optim.Adagrad(model.scorer.parameters(), lr=lrs["optimizer"], fused=device == "cpu")
    else:
        scorer_opt = torch.optim.Adam(model.scorer.parameters(), lr=lrs["optimizer"], **adam)
    out = {"optimizer": scorer_opt}
    if model.denoiser is not None:
        out["denoiser_optimizer"] = torch.optim.Adam(model.denoiser.parameters(), lr=lrs["denoiser_optimizer"], **adam)
    return out


def _structure(config: DansConfig, dataset) -> torch.Tensor:
    key = {"dataset": dataset.name, "content": dataset_fingerprint(dataset), "seed": config.pretrain_seed,
           "samples": config.structure_samples, "exact_max_nodes": config.structure_exact_max_nodes}
    return cached("dans_structure", key, lambda: {"features": structural_features(
        dataset.train, dataset.num_entities, exact_max_nodes=config.structure_exact_max_nodes,
        samples=config.structure_samples, seed=config.pretrain_seed)})["features"]


def _difficulty(config: DansConfig, dataset, pre: dict, structural: torch.Tensor,
                progress: ProgressFactory = silent) -> dict:
    settings = config.pretrain_settings()

    def build() -> dict:
        scorer = load_pretrained(dataset, settings, pre)
        target = rescale_target(DIFFICULTY_TARGETS[config.difficulty_target](
            scorer, dataset.train, max_queries=config.dam_rank_queries, seed=config.pretrain_seed,
            progress=progress),
            config.difficulty_rescale)
        with one_thread():  # the ranking above is per query; this fit sums over entities (kgsearch/cache.py)
            zeta = fit_difficulty(pre["entity"], structural, target, hidden=config.dam_hidden,
                                  epochs=config.dam_epochs, lr=config.dam_lr, seed=config.pretrain_seed)
        return {"difficulty": zeta, "target": target}

    key = {"dataset": dataset.name, "content": dataset_fingerprint(dataset), **asdict(settings),
           "target": config.difficulty_target, "rescale": config.difficulty_rescale, "hidden": config.dam_hidden,
           "epochs": config.dam_epochs,
           "lr": config.dam_lr, "structure": [config.structure_samples, config.structure_exact_max_nodes],
           "threads": 1}
    if 0 < config.dam_rank_queries < 2 * len(dataset.train):   # only when it binds: earlier caches stay valid
        key["rank_queries"] = config.dam_rank_queries
    return cached("dans_dam", key, build)


def _clusters(config: DansConfig, dataset, pre: dict) -> torch.Tensor:
    key = {"dataset": dataset.name, "content": dataset_fingerprint(dataset),
           **asdict(config.pretrain_settings()), "k": config.num_clusters}
    return cached("dans_kmeans", key, lambda: {"labels": kmeans_types(pre["entity"], config.num_clusters,
                                                                       config.pretrain_seed)})["labels"]


class DansRecipe:
    """DANS-KGC (diffusion-based adaptive negative sampling) on a static KG."""

    name: ClassVar[str] = "dans"
    Config: ClassVar[type] = DansConfig
    data_kind: ClassVar[str] = "static"
    metric: ClassVar[str] = "mrr"
    metric_groups: ClassVar[tuple[str, ...]] = ("",)  # filtered ranks, both directions
    # What prepare() reads (pre-training, structure, DAM). num_clusters is not among them: K-means on
    # the prepared embeddings is redone in __init__ when a trial searches K.
    prepare_fields: ClassVar[frozenset[str]] = frozenset({
        "dans", "pretrain_seed", "difficulty_target", "difficulty_rescale", "dam_hidden", "dam_epochs", "dam_lr",
        "dam_rank_queries",
        "structure_samples", "structure_exact_max_nodes", "pretrain_scorer", "pretrain_dim", "pretrain_gamma",
        "pretrain_lr", "pretrain_epochs", "pretrain_batch_size", "pretrain_negatives",
        "pretrain_adversarial_temperature"})

    @classmethod
    def prepare(cls, config: DansConfig, dataset, progress: ProgressFactory = silent) -> dict:
        """Pre-training, structural features, DAM difficulty ζ, K-means types, neighbour index (cached).

        Depends only on fixed params (pretrain_*, dam_*, structure_*, difficulty_*, num_clusters),
        never on the searched trial dim; `dans=false` skips all of it.
        """
        if not config.dans:
            return {"dans": False}
        start = time.perf_counter()
        pre = pretrain(dataset, config.pretrain_settings(), progress=progress)
        structural = _structure(config, dataset)
        dam = _difficulty(config, dataset, pre, structural, progress)
        rowptr, cols = neighbour_csr(dataset.train, dataset.num_entities)
        return {
            "dans": True,
            "entity_embeddings": pre["entity"],
            "structural": structural,
            "difficulty": dam["difficulty"],
            "difficulty_target": dam["target"],
            "cluster_labels": _clusters(config, dataset, pre),
            "num_clusters": config.num_clusters,
            "neighbour_rowptr": rowptr,
            "neighbour_cols": cols,
            "prepare_seconds": time.perf_counter() - start,
        }

    def __init__(self, config: DansConfig, dataset, prepared: dict | None, device: str | torch.device = "cpu",
                 rank: int = 0, world_size: int = 1) -> None:
        self.config, self.dataset = config, dataset
        self.device = torch.device(device)
        self.rank, self.world_size = rank, world_size
        prepared = dict(prepared or {})
        if config.dans and not prepared.get("dans"):
            prepared = self.prepare(config, dataset)  # e.g. a sweep that prepared with dans=false
        if config.dans and int(prepared["num_clusters"]) != config.num_clusters:
            # K is searchable; K-means on the cached pre-trained embeddings is cheap (and cached).
            prepared["cluster_labels"] = _clusters(config, dataset, {"entity": prepared["entity_embeddings"]})
            prepared["num_clusters"] = config.num_clusters
        torch.manual_seed(config.seed)  # identical initial weights on every rank
        # Only the margin losses sample random negatives to filter; softmax bases (complex_n3, nbfnet) score all.
        truth = (TrueAnswers(dataset.train, dataset.num_entities, dataset.num_relations)
                 if config.filter_negatives and config.scorer in MARGIN_SCORERS else None)
        self.model = DansModel(config, dataset.num_entities, dataset.num_relations,
                               prepared if config.dans else None, truth,
                               bf16=use_bf16(config.precision, self.device), train=dataset.train,
                               score_bf16=use_bf16(config.score_precision, self.device)).to(self.device)
        self.forward_model: torch.nn.Module = self.model
        self.progress: ProgressFactory = silent  # kgsearch.train sets a console one
        self.optimizers = make_optimizers(config, self.model)
        anchor, rel, target = both_directions(dataset.train.long(), dataset.num_relations)
        self.queries = torch.stack([anchor, rel, target], dim=1).to(self.device)  # [2n, 3]
        self.noise = torch.Generator(device=self.device)
        self._filter = None

    # -- training --------------------------------------------------------------------------------
    def epoch_shard(self, epoch: int) -> torch.Tensor:
        """Indices into the training queries (both directions of every train triple) this rank trains on."""
        return epoch_shard(len(self.queries), self.config.seed, epoch, self.rank, self.world_size)

    def train_epoch(self, epoch: int) -> dict[str, float]:
        c = self.config
        tau = min(1.0, epoch / c.epochs)  # τ_e = e / E_max; fit() numbers epochs from 1
        seed = epoch_seed(c.seed, epoch, self.rank)
        self.noise.manual_seed(seed)
        torch.manual_seed(seed)  # the GNN's dropout: a resumed run is exact
        factor, lrs = lr_factor(c.lr_schedule, epoch, c.epochs), base_lrs(c)
        for name, opt in self.optimizers.items():
            for group in opt.param_groups:
                group["lr"] = lrs[name] * factor
        self.model.train()
        totals = torch.zeros(4, dtype=torch.float64, device=self.device)
        shard = self.epoch_shard(epoch).to(self.device)
        bar = self.progress(f"epoch {epoch}", -(-len(shard) // c.batch_size))
        for idx in shard.split(c.batch_size):
            q = self.queries[idx]
            out = self.forward_model(q[:, 0], q[:, 1], q[:, 2], tau=tau, generator=self.noise)
            for opt in self.optimizers.values():
                opt.zero_grad(set_to_none=True)
            out["loss"].backward()
            for opt in self.optimizers.values():
                opt.step()
            parts = torch.stack([out["loss"].detach(), out["kgc1"], out["kgc2"], out["diff"]])
            totals += parts.double() * len(idx)
            bar.advance()
        bar.close()
        totals = (totals / max(len(shard), 1)).tolist()
        return {"loss": totals[0], "loss_kgc1": totals[1], "loss_kgc2": totals[2], "loss_diff": totals[3],
                "train_queries": float(len(shard)), "tau": tau, "lr": self.optimizers["optimizer"].param_groups[0]["lr"]}

    # -- evaluation ------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, RankAccumulator]:
        if split not in ("train", "valid", "test"):
            raise ValueError(f"unknown split {split!r}")
        if self._filter is None:
            self._filter = static_filter(self.dataset).to(self.device)
        self.model.eval()
        scorer = self.model.scorer
        acc = evaluate_static(scorer.score_all, getattr(self.dataset, split), self.dataset.num_entities,
                              self.dataset.num_relations, self._filter, batch_size=self.config.eval_batch_size,
                              shard=(self.rank, self.world_size), device=self.device,
                              progress=lambda what, total: self.progress(f"{split} {what}", total))
        return {"": acc}

    # -- checkpoints -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"model": self.model.state_dict(), **{k: opt.state_dict() for k, opt in self.optimizers.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        for name, opt in self.optimizers.items():
            if name in state:
                # Adam's load keeps same-device tensors by reference: copy so two recipes never share moments.
                try:
                    opt.load_state_dict(copy.deepcopy(state[name]))
                except ValueError as exc:  # e.g. a checkpoint from before the scorer/denoiser split
                    raise KGSearchError(f"checkpoint's {name} state does not fit this model ({exc}); it was "
                                        "written by an older kgsearch: retrain, or --eval it with that version") from None
