"""Sweep-file schema: every bad case gives one message naming the file, the line, the key path and why."""

from __future__ import annotations

import pickle
import re
import textwrap
from pathlib import Path

import optuna
import pytest

from kgsearch.errors import KGSearchError
from kgsearch.sweep.space import OptunaSpace, optuna_space
from kgsearch.sweep.spec import IntParam, SweepSpec
from kgsearch.sweep.validate import available_sweeps, load_spec, parse_spec, resolve_sweep

BASE = textwrap.dedent("""\
    model: dans
    dataset: umls
    metric: val_mrr
    mode: max
    num_samples: 4
    max_concurrent_trials: 2
    searcher: {type: tpe, seed: 1, n_startup_trials: 2}
    scheduler:
      type: asha
      max_t: 6
      grace_period: 2
      reduction_factor: 3
    resources: {workers: 1, cpus_per_worker: 1, gpus_per_worker: 0}
    fixed:
      seed: 0
      eval_every: 1
    space:
      lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
      dim: {type: choice, values: [16, 32]}
      scorer: {type: choice, values: [rotate, transe]}
      adversarial_temperature: {type: uniform, low: 0.5, high: 1.5, when: {scorer: transe}}
    smoke:
      num_samples: 2
      max_t: 1
      fixed: {dim: 8, scorer: rotate}
    """)


def write(tmp_path: Path, text: str, name: str = "sweep.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def error_of(tmp_path: Path, text: str, **kw) -> str:
    path = write(tmp_path, text)
    with pytest.raises(KGSearchError) as info:
        load_spec(path, **kw)
    return str(info.value)


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_base_file_resolves(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert spec.name == "sweep" and spec.model == "dans" and spec.num_samples == 4
    assert spec.fixed == {"seed": 0, "eval_every": 1, "epochs": 6}  # epochs comes from scheduler.max_t
    assert list(spec.space) == ["lr", "dim", "scorer", "adversarial_temperature"]
    assert spec.space["adversarial_temperature"].when == {"scorer": ["transe"]}


@pytest.mark.parametrize("old,new,path,reason", [
    ("num_samples: 4", "num_sample: 4", "num_sample", "unknown key 'num_sample' (did you mean 'num_samples'?)"),
    ("high: 1.0e-2}", "high: 1.0e-2, lw: 1}", "space.lr.lw", "unknown key 'lw'"),
    ("low: 1.0e-3, high: 1.0e-2", "low: 0.1, high: 1.0e-2", "space.lr.low", "low 0.1 is above high 0.01"),
    ("low: 1.0e-3, high: 1.0e-2", "low: 0.0, high: 1.0e-2", "space.lr.low", "log-scale range needs low > 0"),
    ("model: dans", "model: transformer", "model", "unknown model 'transformer'"),
    ("dataset: umls", "dataset: no-such-kg", "dataset", "unknown dataset 'no-such-kg'"),
    ("dataset: umls", "dataset: icews14", "dataset", "temporal dataset"),
    ("  dim: {type: choice", "  gama: {type: uniform, low: 1, high: 2}\n  dim: {type: choice", "space.gama",
     "'gama' is not a parameter of this model's config (did you mean 'gamma'?)"),
    ("when: {scorer: transe}", "when: {scorr: transe}", "space.adversarial_temperature.when.scorr",
     "names unknown parameter 'scorr'"),
    ("when: {scorer: transe}", "when: {scorer: complexx}", "space.adversarial_temperature.when.scorer",
     "'complexx' is not one of 'scorer''s choices"),
    ("when: {scorer: transe}", "when: {lr: 0.01}", "space.adversarial_temperature.when.lr",
     "only choice parameters"),
    ("  eval_every: 1", "  eval_every: 1\n  dim: many", "fixed.dim", "input should be a valid integer"),
    ("  eval_every: 1", "  eval_every: 1\n  epochs: 5", "fixed.epochs", "set by scheduler.max_t"),
    ("type: loguniform", "type: logunif", "space.lr.type", "unknown type 'logunif'"),
    ("metric: val_mrr", "metric: val_accuracy", "metric", "unknown metric 'val_accuracy'"),
    ("mode: max", "mode: min", "mode", "must be 'max'"),
    ("dim: {type: choice, values: [16, 32]}", "dim: {type: uniform, low: 16, high: 32}", "space.dim.type",
     "integer parameter; use type: int"),
    ("values: [16, 32]", "values: [16, sixteen]", "space.dim.values.1", "input should be a valid integer"),
    ("grace_period: 2", "grace_period: 0", "scheduler.grace_period", "greater than or equal to 1"),
    ("  eval_every: 1", "  eval_every: 4", "scheduler.grace_period", "multiple of eval_every (4)"),
    ("gpus_per_worker: 0}", "gpus_per_worker: 0.5}\n", "resources.gpus_per_worker", "fractional GPUs"),
    ("  fixed: {dim: 8, scorer: rotate}", "  fixed: {dimension: 8}", "smoke.fixed.dimension",
     "not a parameter"),
    # prepare() runs once per sweep with the fixed values: a searched pretrain_epochs would be ignored
    ("  dim: {type: choice", "  pretrain_epochs: {type: int, low: 2, high: 4}\n  dim: {type: choice",
     "space.pretrain_epochs", "'pretrain_epochs' feeds DansRecipe.prepare()"),
])
def test_bad_file_names_file_line_key_and_reason(tmp_path, old, new, path, reason):
    text = BASE.replace(old, new)
    if path == "resources.gpus_per_worker":
        text = text.replace("workers: 1,", "workers: 2,")
    assert text != BASE, "the test's replacement did not apply"
    message = error_of(tmp_path, text)
    assert reason in message
    m = re.match(r"(?P<file>.+?):(?P<line>\d+): (?P<path>\S+): ", message)
    assert m, message
    assert m["file"].endswith("sweep.yaml") and m["path"] == path
    key = path.split(".")[-1]
    if not key.isdigit():  # the line is the key's own line (its parent's for a missing key)
        expected = [i for i, line in enumerate(text.splitlines(), 1) if re.search(rf"\b{re.escape(key)}\b", line)]
        assert int(m["line"]) in expected, (message, expected)


def test_missing_key_points_at_parent(tmp_path):
    text = BASE.replace("lr: {type: loguniform, low: 1.0e-3,", "lr: {type: loguniform,")
    message = error_of(tmp_path, text)
    assert f"sweep.yaml:{line_of(text, '  lr:')}: space.lr.low: required key is missing" in message


def test_invalid_yaml_names_line(tmp_path):
    message = error_of(tmp_path, BASE.replace("mode: max", "mode: [max"))
    assert re.search(r"sweep\.yaml:\d+: invalid YAML", message)


def test_space_that_can_break_the_config_is_refused(tmp_path):
    # beta_low may exceed beta_global: DansConfig.validate() would fail for some trials.
    text = BASE.replace("  dim: {type: choice", "  beta_low: {type: uniform, low: 0.01, high: 0.2}\n"
                                                 "  beta_global: {type: uniform, low: 0.05, high: 0.3}\n"
                                                 "  dim: {type: choice")
    message = error_of(tmp_path, text)
    assert "space: the space can produce an invalid config" in message and "beta_low" in message


def test_smoke_pins_params_and_drops_their_children(tmp_path):
    spec = load_spec(write(tmp_path, BASE), smoke=True)
    assert spec.num_samples == 2 and spec.scheduler.max_t == 1 and spec.scheduler.grace_period == 1
    assert spec.fixed["dim"] == 8 and spec.fixed["scorer"] == "rotate" and spec.fixed["epochs"] == 1
    # scorer is pinned to rotate, so the transe-only parameter drops out of the space
    assert list(spec.space) == ["lr"]


def test_when_on_a_fixed_param_is_resolved_statically(tmp_path):
    text = BASE.replace("  scorer: {type: choice, values: [rotate, transe]}\n", "") \
               .replace("  eval_every: 1", "  eval_every: 1\n  scorer: transe")
    spec = load_spec(write(tmp_path, text))
    assert list(spec.space)[-1] == "adversarial_temperature" and spec.space["adversarial_temperature"].when == {}


def test_command_line_overrides(tmp_path):
    spec = load_spec(write(tmp_path, BASE), num_samples=9, max_epochs=1, searcher="random", asha=False,
                     max_concurrent_trials=1)
    assert spec.num_samples == 9 and spec.max_concurrent_trials == 1
    assert spec.scheduler.max_t == 1 and spec.scheduler.grace_period == 1 and spec.fixed["epochs"] == 1
    assert spec.scheduler.type == "fifo" and spec.searcher.type == "random"


def test_spec_round_trips_through_its_stored_form(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert SweepSpec.model_validate(spec.model_dump()) == spec


def test_optuna_space_is_conditional_and_picklable(tmp_path):
    space = optuna_space(load_spec(write(tmp_path, BASE)).space)
    space = pickle.loads(pickle.dumps(space))  # Tune pickles it into the searcher state
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0), direction="maximize")
    seen = set()
    for _ in range(30):
        trial = study.ask()
        assert space(trial) is None
        params = trial.params
        assert 1e-3 <= params["lr"] <= 1e-2 and params["dim"] in (16, 32)
        assert ("adversarial_temperature" in params) == (params["scorer"] == "transe")
        seen.add(params["scorer"])
        study.tell(trial, 0.0)
    assert seen == {"rotate", "transe"}


def test_param_def_int_and_log_ranges():
    p = IntParam(type="int", low=20, high=40, step=10)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    values = {OptunaSpace((("diffusion_steps", p),))(t) or t.params["diffusion_steps"]
              for t in (study.ask() for _ in range(20))}
    assert values <= {20, 30, 40} and len(values) > 1


def test_int_step_must_divide_the_range(tmp_path):
    text = BASE.replace("  dim: {type: choice, values: [16, 32]}", "  dim: {type: int, low: 16, high: 40, step: 16}")
    assert "space.dim.step: high - low (24) is not a multiple of step 16" in error_of(tmp_path, text)


def test_sweep_names_resolve_from_cwd_then_repo(tmp_path, monkeypatch):
    local = tmp_path / "search_spaces"
    local.mkdir()
    write(local, BASE, "mine.yaml")
    assert resolve_sweep("mine", cwd=tmp_path) == local / "mine.yaml"
    assert resolve_sweep("dans_umls", cwd=tmp_path).parent.name == "search_spaces"  # the repo's
    write(local, BASE, "dans_umls.yaml")  # ./search_spaces wins over the repo's
    assert resolve_sweep("dans_umls", cwd=tmp_path) == local / "dans_umls.yaml"
    assert "mine" in available_sweeps(cwd=tmp_path)
    with pytest.raises(KGSearchError, match=r"unknown sweep 'nope'.*available sweeps: .*dans_umls"):
        resolve_sweep("nope", cwd=tmp_path)
    with pytest.raises(KGSearchError, match="no such sweep file"):
        resolve_sweep(str(tmp_path / "absent.yaml"))


def test_dkgr_metric_groups(tmp_path):
    text = (BASE.replace("model: dans", "model: dkgr").replace("dataset: umls", "dataset: icews14")
            .split("space:")[0] + "space:\n  lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n")
    assert "unknown metric 'val_mrr' for model 'dkgr'" in error_of(tmp_path, text)
    spec = parse_spec(text.replace("metric: val_mrr", "metric: val_tf_mrr"), source="x.yaml")
    assert spec.metric == "val_tf_mrr" and spec.fixed["epochs"] == 6


def test_custom_dataset_is_found_under_the_data_root(tmp_path, tiny_static_dir, monkeypatch):
    monkeypatch.delenv("KGSEARCH_DATA_ROOT", raising=False)
    text = BASE.replace("dataset: umls", "dataset: tiny_static")
    path = write(tmp_path, text)
    assert load_spec(path, data_root=str(tiny_static_dir.parent)).dataset == "tiny_static"
    with pytest.raises(KGSearchError, match=r"sweep\.yaml:2: dataset: unknown dataset 'tiny_static'"):
        load_spec(path)


def test_trial_refuses_a_config_other_than_the_prepared_one():
    """The trial engine's own check, behind the validator's: prepared data must match the trial's config."""
    from kgsearch.dans.recipe import DansConfig, DansRecipe
    from kgsearch.recipe import prepared_values
    from kgsearch.sweep.spec import ResourcesSpec
    from kgsearch.sweep.trial import TrialContext, build_recipe

    ctx = TrialContext(model="dans", dataset="umls", data_root=None, metric="val_mrr", resources=ResourcesSpec(),
                       train_storage="/unused", shared=None,
                       prepared_for=prepared_values(DansRecipe, DansConfig(pretrain_epochs=30)))
    with pytest.raises(KGSearchError, match=r"differs from what DansRecipe.prepare\(\) ran with.*pretrain_epochs"):
        build_recipe(DansRecipe, {"pretrain_epochs": 5}, ctx, device=None)


# ------------------------------------------------------------------------------------------------
# Issue 16: a minimal file, every problem at once, --set, trackers


MINIMAL = textwrap.dedent("""\
    model: dans
    dataset: umls
    space:
      lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
    """)


def test_a_minimal_sweep_file_gets_documented_defaults(tmp_path):
    from kgsearch.dans.recipe import DansConfig, DansRecipe
    from kgsearch.sweep.spec import DEFAULT_NUM_SAMPLES

    spec = load_spec(write(tmp_path, MINIMAL))
    defaults = DansConfig()
    assert spec.metric == "val_" + DansRecipe.metric and spec.mode == "max"
    assert spec.searcher.type == "tpe" and spec.scheduler.type == "asha"
    assert spec.scheduler.max_t == defaults.epochs == spec.fixed["epochs"]
    assert spec.scheduler.grace_period == defaults.eval_every  # ASHA's rungs on validation epochs
    assert spec.resources.workers == 1 and spec.resources.cpus_per_worker == 1 and spec.resources.gpus_per_worker == 0
    assert spec.num_samples == DEFAULT_NUM_SAMPLES > spec.searcher.n_startup_trials
    assert list(spec.space) == ["lr"]


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    text = (BASE.replace("num_samples: 4", "num_sample: 4")                     # unknown key
                .replace("low: 1.0e-3, high: 1.0e-2", "low: 0.1, high: 1.0e-2")  # low above high
                .replace("  eval_every: 1", "  eval_every: 1\n  dim: many")      # a bad fixed value
                .replace("  dim: {type: choice", "  gama: {type: uniform, low: 1, high: 2}\n  dim: {type: choice"))
    lines = error_of(tmp_path, text).splitlines()
    assert len(lines) == 4, lines
    for line, (path, reason) in zip(sorted(lines, key=lambda l: int(l.split(":")[1])), [
            ("num_sample", "unknown key 'num_sample'"), ("fixed.dim", "input should be a valid integer"),
            ("space.lr.low", "low 0.1 is above high 0.01"), ("space.gama", "did you mean 'gamma'?")]):
        m = re.match(r"(?P<file>.+?):(?P<line>\d+): (?P<path>\S+): (?P<reason>.+)", line)
        assert m and m["file"].endswith("sweep.yaml") and m["path"] == path and reason in m["reason"], line
        assert path.split(".")[-1] in text.splitlines()[int(m["line"]) - 1], line


def test_set_overrides_keys_of_the_sweep_file(tmp_path):
    spec = load_spec(write(tmp_path, BASE), sets=["fixed.lr=0.01", "resources.cpus_per_worker=2",
                                                  "max_concurrent_trials=4", "scheduler.max_t=3"])
    assert spec.fixed["lr"] == 0.01 and "lr" not in spec.space  # a --set fixed value pins a searched one
    assert spec.resources.cpus_per_worker == 2 and spec.max_concurrent_trials == 4
    assert spec.scheduler.max_t == 3 == spec.fixed["epochs"]


@pytest.mark.parametrize("item,wanted", [
    ("fixed.dim=many", "--set fixed.dim=many: fixed.dim: input should be a valid integer"),
    ("resources.workerz=2", "--set resources.workerz=2: resources.workerz: unknown key 'workerz' (did you mean 'workers'?)"),
    ("fixed", "--set fixed: expected KEY.PATH=VALUE"),
    ("model.name=dans", "--set model.name=dans: model is a value, not a section"),
])
def test_a_bad_set_names_the_override(tmp_path, item, wanted):
    assert wanted in error_of(tmp_path, BASE, sets=[item])


def test_a_tracker_whose_package_is_absent_is_refused(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "mlflow", None)  # absent, as on this machine (not a dependency)
    text = BASE + "tracking:\n  mlflow: {experiment_name: dans-umls}\n"
    message = error_of(tmp_path, text)
    assert f"sweep.yaml:{line_of(text, 'mlflow:')}: tracking.mlflow: the mlflow package is not installed" in message
    assert "pip install mlflow" in message


def test_a_tracker_that_is_installed_becomes_a_tune_callback(tmp_path, monkeypatch):
    import importlib.machinery
    import sys
    import types

    from kgsearch.sweep.trackers import tracker_callbacks

    fake = types.ModuleType("mlflow")
    fake.__spec__ = importlib.machinery.ModuleSpec("mlflow", None)
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    spec = load_spec(write(tmp_path, BASE + "tracking:\n  mlflow: {}\n"))
    (callback,) = tracker_callbacks(spec.tracking, "exp")
    assert type(callback).__name__ == "MLflowLoggerCallback" and callback.experiment_name == "exp"
    assert tracker_callbacks(load_spec(write(tmp_path, BASE)).tracking, "exp") == []


# ------------------------------------------------------------------------------------------------
# Issue 13: warm start (`start_from`): the first trial is a run file's values


WARM = textwrap.dedent("""\
    model: dans
    dataset: umls
    scheduler: {max_t: 6}
    space:
      lr: {type: loguniform, low: 1.0e-3, high: 1.0e-2}
      dim: {type: choice, values: [16, 32]}
      diffusion_steps: {type: int, low: 20, high: 200, step: 20}
      scorer: {type: choice, values: [rotate, transe]}
      adversarial_temperature: {type: uniform, low: 0.5, high: 1.5, when: {scorer: transe}}
    """)
RUN = "model: dans\ndataset: umls\nparams: {lr: 0.004, dim: 32, diffusion_steps: 100, epochs: 6}\n"


def project(tmp_path: Path, sweep: str = WARM, run: str | None = RUN, name: str = "mine") -> Path:
    """tmp/search_spaces/NAME.yaml and (unless None) tmp/configs/NAME.yaml, as in the repo."""
    (tmp_path / "search_spaces").mkdir(exist_ok=True)
    (tmp_path / "configs").mkdir(exist_ok=True)
    if run is not None:
        (tmp_path / "configs" / f"{name}.yaml").write_text(run)
    return write(tmp_path / "search_spaces", sweep, f"{name}.yaml")


def test_the_first_trial_defaults_to_the_run_file_of_the_same_name(tmp_path):
    spec = load_spec(project(tmp_path))
    assert spec.start_from == str((tmp_path / "configs" / "mine.yaml").resolve())
    # scorer: the config's default (rotate), which leaves adversarial_temperature inactive
    assert spec.start_values == {"lr": 0.004, "dim": 32, "diffusion_steps": 100, "scorer": "rotate"}
    assert SweepSpec.model_validate(spec.model_dump()) == spec  # sweep.yaml keeps it for --resume


@pytest.mark.parametrize("run", [
    None,  # no run file
    "model: dkgr\ndataset: umls\nparams: {lr: 0.004, epochs: 6}\n",  # another model: not this sweep's
])
def test_no_warm_start_without_a_matching_run_file(tmp_path, run):
    spec = load_spec(project(tmp_path, run=run))
    assert spec.start_from is None and spec.start_values == {}


def test_a_sweep_on_another_graph_starts_from_the_same_run_file(tmp_path):
    spec = load_spec(project(tmp_path), sets=["dataset=family"])
    assert spec.dataset == "family" and spec.start_values["lr"] == 0.004


@pytest.mark.parametrize("value", ["null", "none", "None"])
def test_start_from_null_or_none_turns_it_off(tmp_path, value):
    spec = load_spec(project(tmp_path, WARM + f"start_from: {value}\n"))
    assert spec.start_from is None and spec.start_values == {}
    assert load_spec(project(tmp_path), sets=[f"start_from={value}"]).start_from is None


def test_start_from_a_path_relative_to_the_repo_or_absolute(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(RUN.replace("lr: 0.004", "lr: 0.002").replace("dataset: umls", "dataset: tiny_static"))
    spec = load_spec(project(tmp_path, WARM + f"start_from: {other}\n"))  # another dataset, on purpose: taken
    assert spec.start_from == str(other.resolve()) and spec.start_values["lr"] == 0.002
    text = WARM.replace("[16, 32]", "[16, 32, 200]").replace("high: 1.0e-2}", "high: 1.0e-2}\n  gamma: "
                                                             "{type: uniform, low: 4, high: 16}")
    spec = load_spec(project(tmp_path, text + "start_from: configs/dans_rotate_umls.yaml\n", run=None))
    assert spec.start_from.endswith("configs/dans_rotate_umls.yaml")
    assert spec.start_values["dim"] == 200 and spec.start_values["gamma"] == 9.0


@pytest.mark.parametrize("run,key,reason", [
    (RUN.replace("lr: 0.004", "lr: 0.05"), "lr", "lr = 0.05 (the run file"),  # beyond the range
    (RUN.replace("dim: 32", "dim: 64"), "dim", "dim = 64 (the run file"),  # not a choice
    (RUN.replace("diffusion_steps: 100", "diffusion_steps: 110"), "diffusion_steps", "diffusion_steps = 110"),
    (RUN.replace("dim: 32, ", ""), "dim", "dim = 200 (the config's default: the run file"),  # default outside
    (RUN.replace("dim: 32", "dim: 32, scorer: transe, adversarial_temperature: 2.0"), "adversarial_temperature",
     "adversarial_temperature = 2.0"),  # active for the run file's scorer
])
def test_a_run_file_value_outside_the_space_is_an_error(tmp_path, run, key, reason):
    path = project(tmp_path, run=run)
    with pytest.raises(KGSearchError) as info:
        load_spec(path)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    m = re.match(r"(?P<file>.+?):(?P<line>\d+): (?P<path>\S+): (?P<reason>.+)", message)
    assert m and m["file"] == str(path) and m["path"] == f"space.{key}", message
    assert f"  {key}:" in WARM.splitlines()[int(m["line"]) - 1]  # the searched key's own line
    assert reason in m["reason"] and "configs/mine.yaml" in m["reason"] and "start_from: null" in m["reason"]


def test_a_run_file_outside_the_space_is_fine_once_smoke_pins_that_key(tmp_path):
    text = WARM + "smoke:\n  fixed: {dim: 8}\n"
    with pytest.raises(KGSearchError, match="space.dim"):
        load_spec(project(tmp_path, text, run=RUN.replace("dim: 32", "dim: 64")))
    assert "dim" not in load_spec(project(tmp_path, text, run=RUN.replace("dim: 32", "dim: 64")), smoke=True).start_values


@pytest.mark.parametrize("start_from,reason", [
    ("configs/absent.yaml", "no such run file 'configs/absent.yaml'"),
    ("configs/dkgr_icews14.yaml", "is a run file for model 'dkgr'; this sweep searches model 'dans'"),
])
def test_a_bad_start_from_is_an_error(tmp_path, start_from, reason):
    text = WARM + f"start_from: {start_from}\n"
    path = project(tmp_path, text)
    with pytest.raises(KGSearchError) as info:
        load_spec(path)
    assert str(info.value).startswith(f"{path}:{line_of(text, 'start_from')}: start_from: ")
    assert reason in str(info.value)


def test_time_budget_comes_from_the_file_and_the_flag_overrides_it(tmp_path):
    path = write(tmp_path, BASE.replace("num_samples: 4\n", "num_samples: 4\ntime_budget_minutes: 7.5\n", 1))
    assert load_spec(path).time_budget_minutes == 7.5
    assert load_spec(path, time_budget_minutes=2).time_budget_minutes == 2  # --time-budget
    assert load_spec(path, smoke=True).time_budget_minutes is None  # a smoke run is seconds, never cut short
    assert load_spec(write(tmp_path, BASE)).time_budget_minutes is None
    assert "time_budget_minutes" in error_of(tmp_path, BASE.replace("num_samples: 4\n",
                                                                    "num_samples: 4\ntime_budget_minutes: 0\n", 1))


def test_asha_decides_a_rung_on_the_best_validation_so_far(tmp_path):
    """A trial whose rung epoch dipped below the cutoff but whose best epoch is above it goes on."""
    from types import SimpleNamespace

    from ray.tune.schedulers import TrialScheduler

    from kgsearch.sweep.tuner import make_scheduler

    spec = load_spec(write(tmp_path, BASE))  # ASHA, grace 2, reduction 3
    scheduler = make_scheduler(spec)
    scheduler.set_search_properties(spec.metric, spec.mode)  # what Tune does: must not replace best_val_mrr
    steady, dipped = SimpleNamespace(trial_id="a"), SimpleNamespace(trial_id="b")
    for trial in (steady, dipped):
        scheduler.on_trial_add(None, trial)
    rung = {"epochs_done": 2}
    assert scheduler.on_trial_result(None, steady, {**rung, "val_mrr": 0.90, "best_val_mrr": 0.90}) \
        == TrialScheduler.CONTINUE
    # Its epoch-2 value (0.85) is below the rung's cutoff (0.90), its best (epoch 1: 0.95) is above it.
    assert scheduler.on_trial_result(None, dipped, {**rung, "val_mrr": 0.85, "best_val_mrr": 0.95}) \
        == TrialScheduler.CONTINUE
    late = SimpleNamespace(trial_id="c")
    scheduler.on_trial_add(None, late)
    assert scheduler.on_trial_result(None, late, {**rung, "val_mrr": 0.97, "best_val_mrr": 0.80}) \
        == TrialScheduler.STOP
