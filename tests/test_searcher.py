"""OptunaSearcher: what the Optuna study is told (best value, PRUNED below max_t, FAIL; or, with
`searcher.feedback: last`, every trial COMPLETE with its last value), the warm-start
trial first, and a resume that neither suggests it twice nor trips on a searcher saved by an older class.
The searcher is driven directly, with the results Tune would hand it; no Ray."""

from __future__ import annotations

import pickle

import optuna
import pytest
from optuna.trial import TrialState

from kgsearch.errors import KGSearchError
from kgsearch.sweep.searcher import OptunaSearcher, make_search_alg
from kgsearch.sweep.space import optuna_space
from kgsearch.sweep.spec import LogUniformParam
from kgsearch.sweep.validate import parse_spec

SPACE = {"lr": LogUniformParam(type="loguniform", low=1e-4, high=1e-1)}
MAX_T = 10


@pytest.fixture(autouse=True)
def quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def searcher(max_t: int | None = MAX_T, start: dict | None = None, feedback: str = "best") -> OptunaSearcher:
    return OptunaSearcher(optuna_space(SPACE), "val_mrr", "max", optuna.samplers.RandomSampler(seed=0),
                          max_t=max_t, start_values=start, feedback=feedback)


def result(epoch: int, value: float, best: float | None = None, **extra) -> dict:
    out = {"val_mrr": value, "epochs_done": epoch, "training_iteration": epoch, **extra}
    if best is not None:
        out["best_val_mrr"] = best
    return out


def run_trial(s: OptunaSearcher, trial_id: str, curve: list[float], stop_at: int | None = None, **last_extra):
    """Tune's calls for one trial: a result per epoch, then on_trial_complete with the last result. A
    scheduler STOP hands its result only to on_trial_complete, never to on_trial_result."""
    s.suggest(trial_id)
    best = float("-inf")
    for epoch, value in enumerate(curve, 1):
        best = max(best, value)
        r = result(epoch, value, best, **(last_extra if epoch == len(curve) else {}))
        if epoch == stop_at:
            s.on_trial_complete(trial_id, result=r)
            return
        s.on_trial_result(trial_id, r)
    s.on_trial_complete(trial_id, result=r)  # the function returned: Tune repeats its last result


def test_a_finished_trial_is_told_its_best_value_not_its_last():
    s = searcher(max_t=4)
    run_trial(s, "a", [0.50, 0.91, 0.70, 0.87])
    (t,) = s.study.trials
    assert t.state == TrialState.COMPLETE and t.value == pytest.approx(0.91)
    assert t.intermediate_values == {1: 0.50, 2: 0.91, 3: 0.70, 4: 0.87}


def test_the_best_survives_reports_the_searcher_missed():
    # After a resume the searcher state may predate the best epoch's report; fit()'s best_val_mrr has it.
    s = searcher(max_t=3)
    s.suggest("a")
    s.on_trial_result("a", result(1, 0.6, 0.6))
    s.on_trial_complete("a", result=result(3, 0.7, best=0.95))
    assert s.study.trials[0].value == pytest.approx(0.95)


def test_a_trial_stopped_below_max_t_is_pruned_at_its_rung():
    s = searcher()
    run_trial(s, "a", [0.3, 0.4, 0.45], stop_at=3)  # ASHA stops it at epoch 3 of 10
    (t,) = s.study.trials
    assert t.state == TrialState.PRUNED
    assert t.intermediate_values == {1: 0.3, 2: 0.4, 3: 0.45}  # the stopping result is recorded too
    assert t.value == pytest.approx(0.45)  # Optuna's pruned value: the last step's


def test_a_trial_that_converged_by_its_own_patience_is_complete():
    s = searcher()
    run_trial(s, "a", [0.6, 0.8, 0.7, 0.7], converged=1.0)  # patience ended it at epoch 4 of 10
    (t,) = s.study.trials
    assert t.state == TrialState.COMPLETE and t.value == pytest.approx(0.8)


def test_a_trial_that_reached_max_t_is_complete_even_when_the_scheduler_stopped_it():
    s = searcher(max_t=3)
    run_trial(s, "a", [0.2, 0.5, 0.4], stop_at=3)  # ASHA returns STOP at max_t as well
    t = s.study.trials[0]
    assert t.state == TrialState.COMPLETE and t.value == pytest.approx(0.5)


def test_failed_and_silent_trials():
    s = searcher()
    s.suggest("a")
    s.on_trial_result("a", result(1, 0.5))
    s.on_trial_complete("a", error=True)
    s.suggest("b")
    s.on_trial_complete("b")  # removed before it reported anything
    assert [t.state for t in s.study.trials] == [TrialState.FAIL, TrialState.PRUNED]
    assert s.trials == {}


def test_pruned_trials_reach_tpe_as_pruned():
    """TPE's split ranks pruned trials by (step reached, value): a COMPLETE short trial would instead
    compete with full-length ones on its short-training value."""
    s = OptunaSearcher(optuna_space(SPACE), "val_mrr", "max", optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
                       max_t=MAX_T)
    run_trial(s, "a", [0.1 * i for i in range(1, 11)])  # full length
    run_trial(s, "b", [0.9], stop_at=1)  # high early value, stopped at the first rung
    run_trial(s, "c", [0.2, 0.3, 0.4], stop_at=3)
    states = [t.state for t in s.study.trials]
    assert states == [TrialState.COMPLETE, TrialState.PRUNED, TrialState.PRUNED]
    assert s.study.best_trial.number == 0  # a pruned trial's early 0.9 is not the study's best
    assert "lr" in s.suggest("d")  # TPE samples from the mixed history


# ------------------------------------------------------------------------------------------------
# searcher.feedback: last (Ray's OptunaSearch's feedback, kept for bench/sweep_compare.py)


def test_last_feedback_tells_an_asha_stopped_trial_complete_with_its_last_value():
    s = searcher(feedback="last")
    run_trial(s, "a", [0.3, 0.5, 0.45], stop_at=3)  # ASHA stops it at epoch 3 of 10
    (t,) = s.study.trials
    assert t.state == TrialState.COMPLETE
    assert t.value == pytest.approx(0.45)  # its last value, not its best (0.5)
    assert t.intermediate_values == {1: 0.3, 2: 0.5, 3: 0.45}


def test_last_feedback_tells_a_finished_trial_its_last_value_below_its_best():
    s = searcher(max_t=4, feedback="last")
    run_trial(s, "a", [0.50, 0.91, 0.70, 0.87])
    s.suggest("b")
    s.on_trial_result("b", result(1, 0.6, 0.6))
    s.on_trial_complete("b", result=result(4, 0.7, best=0.95))  # fit()'s best_val_mrr is not used either
    assert [(t.state, t.value) for t in s.study.trials] == [(TrialState.COMPLETE, pytest.approx(0.87)),
                                                            (TrialState.COMPLETE, pytest.approx(0.7))]


def test_last_feedback_still_fails_errors_and_prunes_silent_trials():
    s = searcher(feedback="last")
    s.suggest("a")
    s.on_trial_result("a", result(1, 0.5))
    s.on_trial_complete("a", error=True)
    s.suggest("b")
    s.on_trial_complete("b")  # removed before it reported anything
    run_trial(s, "c", [0.4, float("nan")])  # a NaN last value: Optuna would fail it anyway
    assert [t.state for t in s.study.trials] == [TrialState.FAIL, TrialState.PRUNED, TrialState.FAIL]


def test_last_feedback_lets_a_short_trial_beat_a_full_one():
    """The behaviour `best` fixes (test_pruned_trials_reach_tpe_as_pruned): with `last`, a trial stopped at the
    first rung on a high early value is the study's best, ahead of a trial that ran to max_t."""
    s = OptunaSearcher(optuna_space(SPACE), "val_mrr", "max", optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
                       max_t=MAX_T, feedback="last")
    run_trial(s, "a", [0.05 * i for i in range(1, 11)])  # full length, last 0.5
    run_trial(s, "b", [0.9], stop_at=1)
    assert [t.state for t in s.study.trials] == [TrialState.COMPLETE, TrialState.COMPLETE]
    assert s.study.best_trial.number == 1
    assert "lr" in s.suggest("c")


def test_feedback_comes_from_the_spec_and_set_overrides_it(tmp_path):
    configs, spaces = tmp_path / "configs", tmp_path / "search_spaces"
    configs.mkdir()
    spaces.mkdir()
    (configs / "mine.yaml").write_text("model: dans\ndataset: umls\nparams: {lr: 0.0042, epochs: 3}\n")
    text = "model: dans\ndataset: umls\nscheduler: {max_t: 3}\nspace:\n  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n"
    source = str(spaces / "mine.yaml")
    shipped = parse_spec(text, source=source, name="mine")
    assert shipped.searcher.feedback == "best" and shipped.start_values == {"lr": 0.0042}
    assert make_search_alg(shipped).searcher.searcher.feedback == "best"
    # bench/sweep_compare.py's `legacy`: --set searcher.feedback=last --set start_from=null
    legacy = parse_spec(text, source=source, name="mine", sets=["searcher.feedback=last", "start_from=null"])
    assert legacy.searcher.feedback == "last" and legacy.start_from is None and legacy.start_values == {}
    inner = make_search_alg(legacy).searcher.searcher
    assert inner.feedback == "last" and inner.queued == []
    with pytest.raises(KGSearchError, match="feedback"):
        parse_spec(text, source=source, name="mine", sets=["searcher.feedback=worst"])


# ------------------------------------------------------------------------------------------------
# Warm start and restore


def test_the_warm_start_values_are_the_first_trial():
    start = {"lr": 0.00123}
    s = searcher(start=start)
    assert s.suggest("a") == start
    assert s.suggest("b") != start
    assert s.study.trials[0].params == start and s.study.trials[0].number == 0


def test_make_search_alg_enqueues_the_specs_start_values(tmp_path):
    configs, spaces = tmp_path / "configs", tmp_path / "search_spaces"
    configs.mkdir()
    spaces.mkdir()
    (configs / "mine.yaml").write_text("model: dans\ndataset: umls\nparams: {lr: 0.0042, epochs: 3}\n")
    text = ("model: dans\ndataset: umls\nscheduler: {max_t: 3}\n"
            "space:\n  lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}\n  gamma: {type: uniform, low: 4, high: 16}\n")
    spec = parse_spec(text, source=str(spaces / "mine.yaml"), name="mine")
    alg = make_search_alg(spec)
    inner = alg.searcher.searcher  # SweepSearchGenerator -> ConcurrencyLimiter -> OptunaSearcher
    assert inner.max_t == 3
    first = alg.searcher.suggest("t1")
    assert first == {"lr": 0.0042, "gamma": 12.0}  # gamma: the config's default, the run file sets none
    assert inner.study.trials[0].params == first


def test_a_restored_searcher_does_not_suggest_the_warm_start_again(tmp_path):
    start = {"lr": 0.00123}
    s = searcher(start=start)
    pickled_at_start = pickle.dumps(s)  # tuner.pkl: the searcher as the Tuner was built, queue and all
    assert s.suggest("a") == start
    s.save(str(tmp_path / "state.pkl"))  # Tune's searcher state, saved after the first suggestion

    restored = pickle.loads(pickled_at_start)
    restored.restore(str(tmp_path / "state.pkl"))
    assert restored.suggest("b") != start
    assert [t.params for t in restored.study.trials].count(start) == 1


def test_a_searcher_saved_by_the_older_class_still_restores(tmp_path):
    s = searcher()
    s.suggest("a")
    s.on_trial_result("a", result(1, 0.4))
    old = {k: v for k, v in s.__dict__.items() if k != "max_t"}  # what the older class saved
    with open(tmp_path / "old.pkl", "wb") as f:
        pickle.dump(old, f)
    legacy = OptunaSearcher.__new__(OptunaSearcher)  # tuner.pkl of an older experiment: no max_t at all
    legacy.__dict__.update({k: v for k, v in searcher().__dict__.items() if k != "max_t"})
    legacy.restore(str(tmp_path / "old.pkl"))
    legacy.on_trial_complete("a", result=result(2, 0.3, best=0.4))
    t = legacy.study.trials[0]
    assert t.state == TrialState.COMPLETE and t.value == pytest.approx(0.4)  # no max_t: never pruned
