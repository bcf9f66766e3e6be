"""The sweep's Tune searcher: Optuna (TPE, or random) through its ask/tell API, behind Tune's
concurrency limit, in a search generator that a resume can hand trials to run again.

`--resume` runs again the trials that failed for a reason outside them (kgsearch.sweep.restore): as
new trials with the same searched values, suggested first. So they start under the concurrency limit
like any other trial, Optuna receives their results, and they come on top of `num_samples`. (Tune's
own `resume_errored` restarts them in place: outside the limit, unseen by the searcher, and NaN
trials too.) Every class here is pickled into tuner.pkl and the searcher state by reference, so they
stay module-level classes in the package; their state is plain attributes, and an attribute added later
has a class-level default, so that a searcher pickled by an older kgsearch still restores.

What Optuna is told (docs/ray.md, "Optuna through Tune"):

* every validation, as an intermediate value at step `epochs_done`;
* a trial that ran to the scheduler's `max_t`, or stopped earlier by its own patience (`converged` in its
  last result), is COMPLETE with its *best* reported value (the one its exported checkpoint has), not
  its last;
* a trial stopped below `max_t` otherwise (ASHA, a time budget) is PRUNED at the step it reached, so
  TPE ranks it among the pruned trials by (step, value) instead of taking its short-training value as
  a finished result;
* a failed trial is FAIL.

The first trial can be a run file's values (`start_values`, kgsearch.sweep.warmstart): they are queued
like a resume's reruns, so a restored searcher, whose queue was saved after they were suggested, never
suggests them twice.
"""

from __future__ import annotations

import math
import pickle

import optuna
from ray.tune.search import ConcurrencyLimiter, SearchGenerator, Searcher

from kgsearch.sweep.space import optuna_space
from kgsearch.sweep.spec import SweepSpec


class OptunaSearcher(Searcher):
    """Optuna's ask/tell behind Tune's Searcher interface; intermediate values are reported per epoch."""

    # Defaults for searchers pickled before these attributes existed (their trials are told COMPLETE).
    max_t: int | None = None  # the scheduler's max_t: a trial stopped below it (not converged) is PRUNED

    def __init__(self, space, metric: str, mode: str, sampler, max_t: int | None = None,
                 start_values: dict | None = None):
        super().__init__(metric=metric, mode=mode)
        self.space = space  # an OptunaSpace (define-by-run)
        self.study = optuna.create_study(sampler=sampler, direction="maximize" if mode == "max" else "minimize")
        self.trials: dict[str, optuna.Trial] = {}  # Tune trial id -> its Optuna trial, until told
        # searched values to suggest before asking the sampler: the warm start first, then a resume's reruns
        self.queued: list[dict] = [dict(start_values)] if start_values else []
        self.max_t = max_t

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
        if trial is not None:
            self._report(trial, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        trial = self.trials.pop(trial_id, None)
        if trial is None:
            return
        result = result or {}
        if error or result.get(self.metric) is None:
            # as Tune's OptunaSearch: an error is FAIL, a trial that reported nothing PRUNED
            state = optuna.trial.TrialState.FAIL if error else optuna.trial.TrialState.PRUNED
            self.study.tell(trial, state=state)
            return
        self._report(trial, result)  # the result ASHA stopped a trial on never reached on_trial_result
        if self._stopped_early(result):
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)  # at its last step, with that value
            return
        best = self._best(trial, result)
        if best is None:  # nothing finite was reported
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        else:
            self.study.tell(trial, best)

    @staticmethod
    def _step(result: dict) -> int:
        # epochs_done, not training_iteration: that restarts at 1 after a resume or a retry
        return int(result.get("epochs_done", result.get("training_iteration", 0)))

    def _reported(self, trial: optuna.Trial) -> dict[int, float]:
        """The intermediate values Optuna holds for `trial`."""
        return self.study._storage.get_trial(trial._trial_id).intermediate_values

    def _report(self, trial: optuna.Trial, result: dict) -> None:
        value = result.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        step = self._step(result)
        if step not in self._reported(trial):  # a resumed or retried trial reports its last epochs again
            trial.report(float(value), step)

    def _stopped_early(self, result: dict) -> bool:
        """Stopped below max_t from outside (ASHA, a time budget), not by its own patience."""
        return self.max_t is not None and self._step(result) < self.max_t and not result.get("converged")

    def _best(self, trial: optuna.Trial, result: dict) -> float | None:
        values = [*self._reported(trial).values(), result.get(self.metric)]
        if self.mode == "max":  # fit() keeps the run's best (a max) across resumes: best_<metric>
            values.append(result.get(f"best_{self.metric}"))
        values = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not values:
            return None
        return max(values) if self.mode == "max" else min(values)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        # A state saved by an older kgsearch lacks the newer attributes: their class-level defaults hold.
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
    searcher = OptunaSearcher(optuna_space(spec.space), spec.metric, spec.mode, sampler,
                              max_t=spec.scheduler.max_t, start_values=spec.start_values)
    return SweepSearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent_trials))
