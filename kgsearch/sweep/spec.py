"""The sweep-file types: one pydantic family for what a file says (`SweepFile`) and what a sweep runs
with after validation and overrides (`SweepSpec`, written to the experiment's sweep.yaml for --resume).

Every model is frozen and picklable: the spec travels to trials, and `OptunaSpace` (kgsearch.sweep.space)
is pickled into Tune's searcher state.
"""

from __future__ import annotations

import math
import random
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr, field_validator

Scalar = Union[StrictBool, StrictInt, StrictFloat, StrictStr]
PARAM_TYPES = ("uniform", "loguniform", "int", "choice")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------------------------------------
# Searched parameters


class _Param(_Strict):
    # Exists only when these (choice) params have one of these values; a scalar means [scalar]. A parent is a
    # space entry (by its key) or a fixed field.
    when: dict[str, list[Scalar]] = Field(default_factory=dict)
    # The config field the entry sets; None: its key. The key stays the Optuna parameter's name (trials.csv,
    # importances, figures), the trial's config gets the field: `lr_rotate: {..., param: lr, when: {scorer:
    # rotate}}`. Entries that set the same field need `when`s that never hold together (kgsearch.sweep.space).
    param: StrictStr | None = None

    @field_validator("when", mode="before")
    @classmethod
    def _listed(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return {} if value is None else value

    def field(self, name: str) -> str:
        """The config field this entry (space key `name`) sets. getattr: an entry pickled before `param`
        existed (a searcher state that --resume unpickles) lacks the attribute."""
        return getattr(self, "param", None) or name

    def active(self, chosen: dict) -> bool:
        return all(parent in chosen and chosen[parent] in allowed for parent, allowed in self.when.items())

    def corner(self, high: bool) -> Any:
        return self.high if high else self.low

    def describe(self) -> str:
        scale = " log" if getattr(self, "log", False) or self.type == "loguniform" else ""
        return f"{self.type}[{self.low}, {self.high}]{scale}"


class UniformParam(_Param):
    type: Literal["uniform"]
    low: float
    high: float

    def suggest(self, name: str, trial) -> Any:
        return trial.suggest_float(name, self.low, self.high)

    def sample(self, rng: random.Random) -> Any:
        return rng.uniform(self.low, self.high)


class LogUniformParam(_Param):
    type: Literal["loguniform"]
    low: float
    high: float

    def suggest(self, name: str, trial) -> Any:
        return trial.suggest_float(name, self.low, self.high, log=True)

    def sample(self, rng: random.Random) -> Any:
        return math.exp(rng.uniform(math.log(self.low), math.log(self.high)))


class IntParam(_Param):
    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    def suggest(self, name: str, trial) -> Any:
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)

    def sample(self, rng: random.Random) -> Any:
        if self.log:
            value = int(round(math.exp(rng.uniform(math.log(self.low), math.log(self.high)))))
            return min(self.high, max(self.low, value))
        return rng.randrange(self.low, self.high + 1, self.step)


class ChoiceParam(_Param):
    type: Literal["choice"]
    values: list[Scalar] = Field(min_length=1)

    def suggest(self, name: str, trial) -> Any:
        return trial.suggest_categorical(name, list(self.values))

    def sample(self, rng: random.Random) -> Any:
        return rng.choice(self.values)

    def corner(self, high: bool) -> Any:
        return self.values[-1] if high else self.values[0]

    def describe(self) -> str:
        return f"choice{list(self.values)}"


Param = Annotated[Union[UniformParam, LogUniformParam, IntParam, ChoiceParam], Field(discriminator="type")]
PARAM_MODELS = {"uniform": UniformParam, "loguniform": LogUniformParam, "int": IntParam, "choice": ChoiceParam}


# ------------------------------------------------------------------------------------------------
# Sections


class SearcherSpec(_Strict):
    type: Literal["tpe", "random"] = "tpe"  # Optuna TPE, or Optuna's random sampler (baseline)
    seed: int = 0
    n_startup_trials: int = Field(10, ge=0)  # TPE: random trials before the model is used
    # What Optuna is told when a trial ends (kgsearch.sweep.searcher). best: a finished trial its best value, a
    # trial stopped below max_t (ASHA, a time budget) PRUNED at its rung. last: every trial that reported COMPLETE
    # with its last value, stopped ones included, as Ray's OptunaSearch did; kept only to measure the difference
    # (bench/sweep_compare.py's `legacy`).
    feedback: Literal["best", "last"] = "best"


class SchedulerSpec(_Strict):
    # fifo: every trial runs max_t epochs (no early stopping); grash: successive halving over rungs that train
    # on k-core subgraphs and/or fewer epochs (kgsearch.sweep.grash; static graphs only)
    type: Literal["asha", "fifo", "grash"] = "asha"
    max_t: int | None = Field(None, ge=1)  # epochs a trial may run (sets params.epochs); default: the config's epochs
    grace_period: int | None = Field(None, ge=1)  # epochs before ASHA may stop a trial; default: eval_every
    reduction_factor: int = Field(3, ge=2)  # ASHA's
    # grash (kgsearch.sweep.rungs): the best 1/eta of a rung go on to the next; ceil(log_eta(num_samples)) rungs
    eta: int = Field(4, ge=2)
    # grash: the search's cost in full-run equivalents (max_t epochs on the whole graph), spread evenly over
    # the rungs; the re-training of the winners comes on top
    budget: float = Field(3.0, gt=0, allow_inf_nan=False)
    # grash: what a low rung saves on: combined (subgraph and epochs, the square root of its fidelity each),
    # graph (subgraph only, max_t epochs), epoch (the whole graph, fewer epochs)
    variant: Literal["combined", "graph", "epoch"] = "combined"


class ResourcesSpec(_Strict):
    workers: int = Field(1, ge=1)  # 1: the trial trains inside the Tune trial; >1: Ray Train DDP workers
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)
    max_failures: int = Field(0, ge=-1)  # Train restarts of a worker group inside its trial (-1: unlimited)

    @property
    def direct(self) -> bool:
        """One worker: train inside the Tune trial (a Ray Train worker group costs 9-22 s to start)."""
        return self.workers == 1


class CheckpointSpec(_Strict):
    keep: int = Field(1, ge=1)  # best checkpoints kept per trial (by the sweep metric), besides the newest
    every: int = Field(1, ge=1)  # validations between resume checkpoints; a new best is always written


class MlflowSpec(_Strict):
    tracking_uri: str | None = None  # default: MLflow's own (./mlruns or $MLFLOW_TRACKING_URI)
    experiment_name: str | None = None  # default: the experiment name


class WandbSpec(_Strict):
    project: str | None = None  # default: the experiment name
    group: str | None = None


class TrackingSpec(_Strict):
    """Optional experiment trackers (Ray's callbacks); each needs its package installed."""

    mlflow: MlflowSpec | None = None
    wandb: WandbSpec | None = None


class RetrainSpec(_Strict):
    """The sweep's last stage (kgsearch.sweep.retrain): its `top_k` best distinct configurations re-trained at
    full length (the epochs the config states, FIFO) with each of `seeds`; best/ is the best mean."""

    top_k: int = Field(3, ge=0)  # 0: off (best/ is the single best search trial)
    seeds: list[Annotated[StrictInt, Field(ge=0)]] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    # Validate every this many epochs in the re-training runs only (and at the last epoch); None: the search's
    # (`fixed.eval_every`, which ASHA needs every epoch). Each run's best checkpoint is then the best of these
    # validations. A value other than the search's makes no search trial the same run as a seed's re-training,
    # so none is reused (kgsearch.sweep.retrain).
    eval_every: int | None = Field(None, ge=1)

    @property
    def on(self) -> bool:
        return self.top_k > 0

    def runs(self) -> int:
        return self.top_k * len(self.seeds)


SMOKE_RETRAIN = RetrainSpec(top_k=1, seeds=[0, 1])  # --smoke's default: seconds, and still a mean of two


class SmokeSpec(_Strict):
    num_samples: int = Field(2, ge=1)
    max_t: int = Field(2, ge=1)
    grace_period: int | None = Field(None, ge=1)  # default: eval_every
    max_concurrent_trials: int | None = Field(None, ge=1)
    fixed: dict[str, Any] = Field(default_factory=dict)  # param overrides; pins searched params too
    retrain: RetrainSpec = Field(default_factory=lambda: SMOKE_RETRAIN)


# ------------------------------------------------------------------------------------------------
# The file, and the resolved spec


# 20 trials: TPE's 10 random start-up trials, then 10 guided by its model of the space.
DEFAULT_NUM_SAMPLES = 20


class SweepFile(_Strict):
    """What a search_spaces/NAME.yaml may say; only `model` and `dataset` are required."""

    description: str | None = None
    model: str
    dataset: str
    data_root: str | None = None
    metric: str | None = None  # default: "val_" + the recipe's metric
    mode: Literal["max", "min"] = "max"
    num_samples: int = Field(DEFAULT_NUM_SAMPLES, ge=1)
    max_concurrent_trials: int = Field(1, ge=1)
    # Minutes of search (Tune's time_budget_s; the re-training comes after it), so that a sweep file can
    # promise its wall time whatever the trials cost; --time-budget overrides it, --smoke ignores it.
    time_budget_minutes: float | None = Field(None, gt=0, allow_inf_nan=False)
    searcher: SearcherSpec = Field(default_factory=SearcherSpec)
    scheduler: SchedulerSpec = Field(default_factory=SchedulerSpec)
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    # Tune restarts of a failed trial from its last checkpoint (-1: unlimited); default 1 on a cluster,
    # 0 on a local Ray. A NaN loss or a bad config is never retried.
    retries: int | None = Field(None, ge=-1)
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    storage: str | None = None
    # The run file whose values the first trial has (kgsearch.sweep.warmstart): "auto" (the default) is
    # configs/<sweep name>.yaml when it exists for the same model and dataset; null or "none": no warm start;
    # an earlier sweep's experiment folder (or its optuna_journal.log): that study's best COMPLETE trial.
    start_from: str | None = "auto"
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)  # the top-k re-trained with seeds at the end
    fixed: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Param] = Field(default_factory=dict)
    smoke: SmokeSpec | None = None


SECTIONS: dict[tuple, type[BaseModel]] = {
    (): SweepFile, ("searcher",): SearcherSpec, ("scheduler",): SchedulerSpec,
    ("resources",): ResourcesSpec, ("smoke",): SmokeSpec, ("checkpoints",): CheckpointSpec,
    ("tracking",): TrackingSpec, ("tracking", "mlflow"): MlflowSpec, ("tracking", "wandb"): WandbSpec,
    ("retrain",): RetrainSpec, ("smoke", "retrain"): RetrainSpec,
}


class SweepSpec(_Strict):
    """A validated sweep with --smoke and command-line overrides applied."""

    name: str  # the file stem
    source: str  # the file it came from
    model: str
    dataset: str
    data_root: str | None
    metric: str  # the Tune metric, "val_" + a metric the recipe reports
    mode: Literal["max", "min"]
    num_samples: int
    max_concurrent_trials: int
    searcher: SearcherSpec
    scheduler: SchedulerSpec  # max_t and grace_period always set
    resources: ResourcesSpec
    storage: str | None
    fixed: dict[str, Any]  # every fixed recipe param, `epochs` = scheduler.max_t included
    space: dict[str, Param]  # searched params, a `when` parent always before its children
    description: str | None = None
    smoke: bool = False
    retries: int | None = None  # None until the sweep knows whether it runs on a cluster
    checkpoints: CheckpointSpec = Field(default_factory=CheckpointSpec)
    tracking: TrackingSpec = Field(default_factory=TrackingSpec)
    start_from: str | None = None  # the run file (or earlier study's journal) the first trial comes from; None: none
    start_values: dict[str, Any] = Field(default_factory=dict)  # its values of the searched (active) params
    # A spec stored before the re-training existed reads as the default (3 x 3).
    retrain: RetrainSpec = Field(default_factory=RetrainSpec)
    time_budget_minutes: float | None = None  # the search's (--time-budget, else the file's; none under --smoke)

    @property
    def searched(self) -> tuple[str, ...]:
        """The searched parameters' names (space keys, Optuna's names): not always config fields (`param:`)."""
        return tuple(self.space)

    @property
    def searched_fields(self) -> set[str]:
        """The config fields the space sets, in some trials at least."""
        return {p.field(k) for k, p in self.space.items()}
