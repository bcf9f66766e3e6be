"""Every shipped sweep file validates (as is and with --smoke) and only ever produces valid configs."""

from __future__ import annotations

import optuna
import pytest
import yaml

from kgsearch.config import config_from_dict, field_names
from kgsearch.recipe import get_recipe
from kgsearch.sweep.space import optuna_space, to_config
from kgsearch.sweep.validate import REPO_ROOT, load_spec

SHIPPED = sorted(p.stem for p in (REPO_ROOT / "search_spaces").glob("*.yaml"))
EXPECTED = {"dans_umls", "dans_family", "dans_rotate_umls", "dans_rotate_family", "dans_nbfnet_umls",
            "dans_nbfnet_family", "dans_wn18rr", "dans_fb15k237", "dans_nell995", "dkgr_icews14", "dkgr_icews18", "dkgr_icews0515",
            "dans_umls_bases"}
LARGE = {"dans_wn18rr", "dans_fb15k237", "dans_nell995", "dkgr_icews18", "dkgr_icews0515"}
SOFTMAX_BASES = {"complex_n3", "nbfnet"}
# Each paper's searchable hyperparameters, by config field name (a model without a paper list: none).
PAPER_SEARCHED = {
    "dans": {"diffusion_steps", "beta_init", "beta_low", "beta_global", "mu", "curriculum_lambda",
             "curriculum_zeta", "eta", "margin_increment", "gamma", "lr", "dim"},
    "dkgr": {"history_len", "lambda_entity", "lambda_relation", "lambda_static", "angle_deg", "lr", "dim"},
}


def test_all_sweeps_are_shipped():
    assert EXPECTED <= set(SHIPPED)


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("smoke", [False, True])
def test_sweep_file_validates(name, smoke):
    spec = load_spec(name, smoke=smoke)
    assert spec.name == name
    assert spec.metric == "val_" + get_recipe(spec.model).metric
    assert spec.fixed["epochs"] == spec.scheduler.max_t
    if smoke:
        assert spec.scheduler.max_t <= 2 and spec.num_samples <= 2 and spec.fixed.get("dim", 99) <= 16
    else:
        wanted = PAPER_SEARCHED.get(spec.model, set())
        if spec.fixed.get("scorer") in SOFTMAX_BASES:
            wanted = wanted - {"gamma"}  # γ_base is the margin losses'; a softmax base has none
        assert wanted <= spec.searched_fields, wanted - spec.searched_fields  # fields, whatever the keys (`param:`)
        assert spec.searcher.type == "tpe" and spec.scheduler.type == "asha"
        assert spec.searcher.n_startup_trials < spec.num_samples
    if name in LARGE:
        assert spec.resources.gpus_per_worker >= 1  # sized for a GPU cluster
    if spec.resources.workers > 1:
        assert float(spec.resources.gpus_per_worker).is_integer()


@pytest.mark.parametrize("name", SHIPPED)
def test_sampled_trials_build_valid_configs(name):
    spec = load_spec(name)
    recipe_cls = get_recipe(spec.model)
    space = optuna_space(spec.space)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3), direction="maximize")
    fields = set(field_names(recipe_cls.Config))
    for _ in range(40):
        trial = study.ask()
        space(trial)
        params = space.config(trial.params)  # what Tune's trial config gets: config fields only
        assert set(params) <= fields, set(params) - fields
        config = config_from_dict(recipe_cls.Config, {**spec.fixed, **params}, source=name)
        assert config.epochs == spec.scheduler.max_t
        study.tell(trial, 0.0)


# ------------------------------------------------------------------------------------------------
# Warm start (issue 13): a shipped sweep's first trial is its shipped run file


# Keys where a sweep may differ from its start_from run file, and why. Nothing else may differ.
SWEEP_ONLY = {
    # Validation only: sweeps validate every epoch so that ASHA's rungs and the best-checkpoint choice see
    # a fresh value. It never changes the weights (evaluation draws no random numbers; DANS seeds its noise
    # per epoch), so the trial trains exactly the run file's run, validated more often.
    "eval_every",
}


def _run_file(name: str) -> str | None:
    """The shipped run file a sweep starts from: configs/<name>.yaml (start_from: auto), or the configs/ file
    its `start_from:` names (dans_umls_bases: configs/dans_umls.yaml)."""
    start = (yaml.safe_load((REPO_ROOT / "search_spaces" / f"{name}.yaml").read_text()) or {}).get("start_from", "auto")
    if start == "auto":
        return f"configs/{name}.yaml" if (REPO_ROOT / "configs" / f"{name}.yaml").is_file() else None
    return start if isinstance(start, str) and start.startswith("configs/") else None


RUN_FILES = {n: _run_file(n) for n in SHIPPED if _run_file(n)}
WITH_RUN_FILE = sorted(RUN_FILES)


def test_the_small_sweeps_start_from_their_run_files():
    assert {"dans_umls", "dans_family", "dans_rotate_umls", "dans_rotate_family", "dkgr_icews14"} <= set(WITH_RUN_FILE)
    assert RUN_FILES["dans_umls_bases"] == "configs/dans_umls.yaml"  # no run file of its own: the ComplEx-N3 one


def test_the_default_dans_sweeps_search_the_complex_n3_base():
    """dans_umls / dans_family search the default base (ComplEx-N3); dans_rotate_* the RotatE alternative."""
    for name in ("dans_umls", "dans_family"):
        assert load_spec(name).fixed["scorer"] == "complex_n3", name
    for name in ("dans_rotate_umls", "dans_rotate_family"):
        assert load_spec(name).fixed["scorer"] == "rotate", name


@pytest.mark.parametrize("name", WITH_RUN_FILE)
def test_the_first_trial_is_the_shipped_run_file(name):
    """fixed + the first suggested trial = the run file's params (every config field, defaults included),
    bar SWEEP_ONLY; `epochs` (= scheduler.max_t) too, since DANS's curriculum and lr schedule follow it."""
    from kgsearch.config import config_to_dict
    from kgsearch.run.runfile import RunFile
    from kgsearch.sweep.searcher import make_search_alg

    spec = load_spec(name)
    run = RunFile.load(REPO_ROOT / RUN_FILES[name])
    assert spec.start_from == str((REPO_ROOT / RUN_FILES[name]).resolve())
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    first = make_search_alg(spec).searcher.suggest("t001")  # what Tune's first trial gets: config fields
    assert first == to_config(spec.space, spec.start_values)
    config_cls = get_recipe(spec.model).Config
    assert set(first) <= set(field_names(config_cls)), set(first) - set(field_names(config_cls))
    trial = config_to_dict(config_from_dict(config_cls, {**spec.fixed, **first}, source=name))
    wanted = config_to_dict(run.config())
    differ = {k: (trial[k], wanted[k]) for k in trial if trial[k] != wanted[k] and k not in SWEEP_ONLY}
    assert differ == {}, f"search_spaces/{name}.yaml (sweep, run file): {differ}"
