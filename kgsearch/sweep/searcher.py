"""The sweep's Tune searcher: Optuna (TPE, or random) through its ask/tell API, behind Tune's
concurrency limit, in a search generator that a resume can hand trials to run again.

`--resume` runs again the trials that failed for a reason outside them (kgsearch.sweep.restore): as
new trials with the same searched values, suggested first. So they start under the concurrency limit
like any other trial, Optuna receives their results, and they come on top of `num_samples`. (Tune's
own `resume_errored` restarts them in place: outside the limit, unseen by the searcher, and NaN
trials too.) Every class here is pickled into tuner.pkl and the searcher state by reference, so they
stay module-level classes in the package.
"""

from __future__ import annotations

import logging
import math
import pickle

import optuna
from ray.tune.search import ConcurrencyLimiter, SearchGenerator, Searcher

from kgsearch.sweep.space import optuna_space
from kgsearch.sweep.spec import SweepSpec

logger = logging.getLogger(__name__)


class OptunaSearcher(Searcher):
    """Optuna's ask/tell behind Tune's Searcher interface; intermediate values are reported per epoch."""

    def __init__(self, space, metric: str, mode: str, sampler):
        super().__init__(metric=metric, mode=mode)
        self.space = space  # an OptunaSpace (define-by-run)
        self.study = optuna.create_study(sampler=sampler, direction="maximize" if mode == "max" else "minimize")
        self.trials: dict[str, optuna.Trial] = {}  # Tune trial id -> its Optuna trial, until told
        self.queued: list[dict] = []  # searched values to suggest before asking the sampler

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric, mode and space are given at construction

    def suggest(self, trial_id: str) -> dict | None:
        if self.queued:
            self.study.enqueue_trial(self.queued.pop(0))
        trial = self.study.ask()
        self.space(trial)
        self.trials[trial_id] = trial
        return dict(trial.params)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.trials.get(trial_id)
        value = result.get(self.metric)
        if trial is not None and value is not None and math.isfinite(value):
            # epochs_done, not training_iteration: that restarts at 1 after a resume or a retry
            trial.report(float(value), int(result.get("epochs_done", result.get("training_iteration", 0))))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.trials.pop(trial_id, None)
        if trial is None:
            return
        value = (result or {}).get(self.metric)
        if value is None:  # as Tune's OptunaSearch: an error is FAIL, a trial that reported nothing PRUNED
            state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
            self.study.tell(trial, state=state)
            return
        try:
            self.study.tell(trial, float(value))  # an ASHA-stopped trial: COMPLETE with its early value
        except ValueError as exc:  # NaN
            logger.warning("%s", exc)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))


class SweepSearchGenerator(SearchGenerator):
    """Tune's search generator, plus the trials a resume runs again."""

    # The searched values of the trials to run again, set by kgsearch.sweep.run before
    # `Tuner.restore(...).fit()`; taken when Tune restores this generator's state inside fit().
    reruns_on_restore: list[dict] = []

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        reruns, SweepSearchGenerator.reruns_on_restore = list(type(self).reruns_on_restore), []
        if not reruns:
            return
        searcher = self.searcher
        while hasattr(searcher, "searcher"):
            searcher = searcher.searcher
        searcher.queued.extend(reruns)
        state = self.get_state()  # more samples, and not finished even if all were suggested before
        self.set_state({**state, "total_samples": state["total_samples"] + len(reruns), "finished": False})


def make_search_alg(spec: SweepSpec) -> SweepSearchGenerator:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.searcher.type == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.searcher.seed)
    else:
        # TPE's default 10 random start-up trials would be most of a small sweep.
        sampler = optuna.samplers.TPESampler(seed=spec.searcher.seed, n_startup_trials=spec.searcher.n_startup_trials)
    searcher = OptunaSearcher(optuna_space(spec.space), spec.metric, spec.mode, sampler)
    return SweepSearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent_trials))
