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

`searcher.feedback: last` (kgsearch.sweep.spec) tells instead what Ray's OptunaSearch told: every trial
that reported a value COMPLETE with its *last* value, ASHA-stopped ones included (a failed trial is still
FAIL). It is there only to measure what the honest feedback above is worth (bench/sweep_compare.py).

The study is stored in the experiment folder (`optuna_journal.log`, kgsearch.sweep.study), so a finished
sweep can be extended (`--resume --num-samples`), another sweep can start from its best trial, and
parameter importances can be computed. A restore reopens it; trials the journal holds but Tune's saved
state does not (asked after the last save of a killed driver) are marked FAIL there.

The first trial can be a run file's values (`start_values`, kgsearch.sweep.warmstart): they are queued
like a resume's reruns, so a restored searcher, whose queue was saved after they were suggested, never
suggests them twice.

Optuna suggests by space key; `suggest` hands Tune the config fields those keys set (`param:`,
kgsearch.sweep.space), so a trial's config never holds a key like `lr_rotate`. The queue holds keys.
"""

from __future__ import annotations

import math
import os
import pickle
import shutil
from pathlib import Path

import optuna
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter, SearchGenerator, Searcher

from kgsearch.sweep.space import optuna_space
from kgsearch.sweep.spec import SweepSpec
from kgsearch.sweep.study import open_study


class OptunaSearcher(Searcher):
    """Optuna's ask/tell behind Tune's Searcher interface; intermediate values are reported per epoch.

    With `journal` (a path) the study lives in that journal file (kgsearch.sweep.study), opened on first
    use: a pickle holds the path, the sampler and the Optuna trial ids, never the open storage, and a
    restore reopens it (where kgsearch.sweep.run says the journal is now). Without one the study lives in
    memory and is pickled whole (what a searcher saved by an older kgsearch holds).
    """

    # Defaults for searchers pickled before these attributes existed (their trials are told COMPLETE).
    max_t: int | None = None  # the scheduler's max_t: a trial stopped below it (not converged) is PRUNED
    journal: str | None = None  # the study's journal file; None: the study is in memory (`_study`)
    study_name: str = "kgsearch"
    carry_journal: bool = False  # a bucket experiment: the journal's bytes travel in the pickled state
    feedback: str = "best"  # "last": Ray's OptunaSearch's COMPLETE-with-the-last-value (measurements only)
    _study: optuna.Study | None = None
    _carried: bytes | None = None  # journal bytes from a restored state, written out when the study opens

    def __init__(self, space, metric: str, mode: str, sampler, max_t: int | None = None,
                 start_values: dict | None = None, journal: str | None = None, study_name: str | None = None,
                 carry_journal: bool = False, feedback: str = "best"):
        super().__init__(metric=metric, mode=mode)
        self.space = space  # an OptunaSpace (define-by-run)
        self.sampler = sampler
        self.direction = "maximize" if mode == "max" else "minimize"
        self.journal, self.carry_journal = (str(journal) if journal else None), carry_journal
        self.study_name = study_name or type(self).study_name
        if self.journal is None:
            self._study = optuna.create_study(sampler=sampler, direction=self.direction)
        self.trials: dict[str, int] = {}  # Tune trial id -> its Optuna trial id, until told
        # searched values to suggest before asking the sampler: the warm start first, then a resume's reruns
        self.queued: list[dict] = [dict(start_values)] if start_values else []
        self.max_t = max_t
        if feedback not in ("best", "last"):
            raise ValueError(f"feedback must be 'best' or 'last', got {feedback!r}")
        self.feedback = feedback

    @property
    def study(self) -> optuna.Study:
        if self._study is None:
            self._study = self._open()
        return self._study

    def _open(self) -> optuna.Study:
        path = Path(self.journal)
        if self._carried and (not path.exists() or path.stat().st_size < len(self._carried)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(self._carried)  # a resume on a driver that lacks the newest journal
        self._carried = None
        study = open_study(path, self.study_name, self.sampler, self.direction)
        # Trials asked after Tune's last saved state (a killed driver) are not Tune's: Tune never runs
        # them, so they would stay RUNNING in the study for good.
        mine = set(self.trials.values())
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING)):
            if t._trial_id not in mine:
                study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
        return study

    def relocate(self, journal: str) -> None:
        """The journal is at `journal` now (a resume: the experiment folder may have moved)."""
        if self.journal is not None and str(journal) != self.journal:
            self.journal, self._study = str(journal), None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.journal is not None:
            state.pop("_study", None)  # reopened from the journal
            if self.carry_journal and Path(self.journal).is_file():
                state["_carried"] = Path(self.journal).read_bytes()
        return state

    def __setstate__(self, state: dict) -> None:
        state = dict(state)
        if "study" in state:  # saved by an older kgsearch: the in-memory study, and Trial objects
            state["_study"] = state.pop("study")
        state["trials"] = {k: getattr(v, "_trial_id", v) for k, v in state.get("trials", {}).items()}
        if state.get("journal") is not None:
            state["_study"] = None
        self.__dict__.update(state)

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True  # metric, mode and space are given at construction

    def suggest(self, trial_id: str) -> dict | None:
        study = self.study
        if self.queued:
            study.enqueue_trial(self.queued.pop(0))
        trial = study.ask()
        self.space(trial)
        self.trials[trial_id] = trial._trial_id
        # Optuna's names are the space keys; Tune's trial config gets the config fields they set (`param:`)
        return self.space.config(dict(trial.params))

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        trial = self.trials.get(trial_id)
        if trial is not None and self._frozen(trial) is not None:
            self._report(trial, result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        study = self.study  # opened (after a restore) while the trial is still among ours, not FAILed as a stray
        trial = self.trials.pop(trial_id, None)
        frozen = None if trial is None else self._frozen(trial)
        if frozen is None:
            return
        result = result or {}
        # skip_if_finished: after a killed driver the journal may have told a trial Tune runs again
        number = frozen.number
        if error or result.get(self.metric) is None:
            # as Tune's OptunaSearch: an error is FAIL, a trial that reported nothing PRUNED
            state = TrialState.FAIL if error else TrialState.PRUNED
            study.tell(number, state=state, skip_if_finished=True)
            return
        self._report(trial, result)  # the result ASHA stopped a trial on never reached on_trial_result
        if self.feedback == "last":  # Ray's OptunaSearch: COMPLETE with the last value, however the trial ended
            last = float(result[self.metric])
            if math.isfinite(last):
                study.tell(number, last, skip_if_finished=True)
            else:
                study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
            return
        if self._stopped_early(result):
            # at its last step, with that value
            study.tell(number, state=TrialState.PRUNED, skip_if_finished=True)
            return
        best = self._best(trial, result)
        if best is None:  # nothing finite was reported
            study.tell(number, state=TrialState.FAIL, skip_if_finished=True)
        else:
            study.tell(number, best, skip_if_finished=True)

    @staticmethod
    def _step(result: dict) -> int:
        # epochs_done, not training_iteration: that restarts at 1 after a resume or a retry
        return int(result.get("epochs_done", result.get("training_iteration", 0)))

    def _frozen(self, trial: int) -> optuna.trial.FrozenTrial | None:
        """The trial with Optuna id `trial`; None when the study lacks it (its journal was lost or replaced)."""
        try:
            return self.study._storage.get_trial(trial)
        except KeyError:
            return None

    def _reported(self, trial: int) -> dict[int, float]:
        """The intermediate values Optuna holds for the trial with Optuna id `trial`."""
        return self._frozen(trial).intermediate_values

    def _report(self, trial: int, result: dict) -> None:
        value = result.get(self.metric)
        if value is None or not math.isfinite(value):
            return
        step = self._step(result)
        frozen = self._frozen(trial)
        # a resumed or retried trial reports its last epochs again; a finished one takes no reports
        if step not in frozen.intermediate_values and not frozen.state.is_finished():
            self.study._storage.set_trial_intermediate_value(trial, step, float(value))

    def _stopped_early(self, result: dict) -> bool:
        """Stopped below max_t from outside (ASHA, a time budget), not by its own patience."""
        return self.max_t is not None and self._step(result) < self.max_t and not result.get("converged")

    def _best(self, trial: int, result: dict) -> float | None:
        values = [*self._reported(trial).values(), result.get(self.metric)]
        if self.mode == "max":  # fit() keeps the run's best (a max) across resumes: best_<metric>
            values.append(result.get(f"best_{self.metric}"))
        values = [float(v) for v in values if v is not None and math.isfinite(v)]
        if not values:
            return None
        return max(values) if self.mode == "max" else min(values)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        super().save_to_dir(checkpoint_dir, session_str)
        if self.carry_journal and self.journal and Path(self.journal).is_file():
            # Tune's driver staging folder goes to the bucket as a whole: a copy of the journal goes with it
            # (`<experiment>/optuna_journal.log` there, for start_from and importances after a download).
            target = Path(checkpoint_dir) / Path(self.journal).name
            shutil.copyfile(self.journal, f"{target}.tmp")
            os.replace(f"{target}.tmp", target)

    def restore(self, checkpoint_path: str) -> None:
        # A state saved by an older kgsearch lacks the newer attributes: their class-level defaults hold.
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))


class SweepSearchGenerator(SearchGenerator):
    """Tune's search generator, plus the trials a resume runs again or adds (`--resume --num-samples`)."""

    # Set by kgsearch.sweep.run (`on_restore`) before `Tuner.restore(...).fit()`; taken when Tune restores
    # this generator's state inside fit(): the searched values of the trials to run again, how many
    # trials to add, and where this driver finds the study's journal.
    reruns_on_restore: list[dict] = []
    more_on_restore: int = 0
    journal_on_restore: str | None = None

    def restore_from_dir(self, dirpath: str) -> None:
        super().restore_from_dir(dirpath)
        cls = SweepSearchGenerator
        reruns, more, journal = list(cls.reruns_on_restore), cls.more_on_restore, cls.journal_on_restore
        cls.reruns_on_restore, cls.more_on_restore, cls.journal_on_restore = [], 0, None
        searcher = self.searcher
        while hasattr(searcher, "searcher"):
            searcher = searcher.searcher
        if journal is not None and hasattr(searcher, "relocate"):
            searcher.relocate(journal)
        if not reruns and not more:
            return
        # A failure record holds the trial's Tune config values (config fields): back to the space's keys
        searcher.queued.extend(searcher.space.searched(r) for r in reruns)
        state = self.get_state()  # more samples, and not finished even if all were suggested before
        self.set_state({**state, "total_samples": state["total_samples"] + len(reruns) + more, "finished": False})


def on_restore(*, reruns: list[dict] | None = None, more: int = 0, journal: str | None = None) -> None:
    """What the next restored search generator takes (see SweepSearchGenerator)."""
    if reruns is not None:
        SweepSearchGenerator.reruns_on_restore = list(reruns)
    SweepSearchGenerator.more_on_restore = more
    SweepSearchGenerator.journal_on_restore = journal


def make_search_alg(spec: SweepSpec, journal: str | None = None, study_name: str | None = None,
                    carry_journal: bool = False) -> SweepSearchGenerator:
    """The sweep's search algorithm; with `journal` its study is stored in that file (kgsearch.sweep.study)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if spec.searcher.type == "random":
        sampler = optuna.samplers.RandomSampler(seed=spec.searcher.seed)
    else:
        # TPE's default 10 random start-up trials would be most of a small sweep.
        sampler = optuna.samplers.TPESampler(seed=spec.searcher.seed, n_startup_trials=spec.searcher.n_startup_trials)
    searcher = OptunaSearcher(optuna_space(spec.space), spec.metric, spec.mode, sampler,
                              max_t=spec.scheduler.max_t, start_values=spec.start_values, journal=journal,
                              study_name=study_name or spec.name, carry_journal=carry_journal,
                              feedback=spec.searcher.feedback)
    return SweepSearchGenerator(ConcurrencyLimiter(searcher, max_concurrent=spec.max_concurrent_trials))
