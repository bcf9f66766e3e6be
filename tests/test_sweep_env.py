"""The sweep's environment, without starting Ray: resource mismatches refused early and clearly, CPUs
from the cgroup, trial drivers kept off reclaimable nodes, the pinned dependencies and the one patch of
Ray internals (issue 16, items 6-8)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

from kgsearch.errors import KGSearchError
from kgsearch.sweep import ray_env
from kgsearch.sweep.spec import ResourcesSpec
from kgsearch.sweep.validate import load_spec

REPO = Path(__file__).resolve().parents[1]


def test_a_local_machine_with_fewer_gpus_than_a_trial_needs_is_refused(monkeypatch):
    import ray

    spec = load_spec("dans_fb15k237")  # 4 workers x 1 GPU
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 32.0, "GPU": 1.0})
    with pytest.raises(KGSearchError, match=r"a trial asks for 4 GPUs \(4 worker\(s\) x 1\) but this machine's Ray "
                                            r"has 1: lower resources.workers .*--set resources.workers=1.*--cpu"):
        ray_env.adapt_resources(spec, "local", lambda _: None)
    # a cluster may still add GPU nodes: trusted there
    assert ray_env.adapt_resources(spec, "cluster", lambda _: None).resources == spec.resources


def test_a_gpu_trial_on_a_node_without_cuda_fails_with_the_reason(monkeypatch):
    """Before: the direct trial silently trained on the CPU."""
    import torch

    from kgsearch.dans.recipe import DansRecipe
    from kgsearch.sweep.trial import TrialContext, _train_here

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    ctx = TrialContext(model="dans", dataset="umls", data_root=None, metric="val_mrr",
                       resources=ResourcesSpec(gpus_per_worker=1), train_storage="/unused", shared=None, prepared_for={})
    with pytest.raises(KGSearchError, match=r"asks for 1 GPU per worker, but torch .* has no CUDA .*or pass --cpu"):
        _train_here(DansRecipe, {}, ctx, started=0.0)


@pytest.mark.parametrize("files,limit", [
    ({"cpu.max": "100000 100000\n"}, 1),  # cgroup v2 quota of one CPU
    ({"cpu.max": "150000 100000\n"}, 1),  # 1.5 CPUs: Ray gets whole ones
    ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
    ({"cpu.max": "max 100000\n"}, None),  # no quota
])
def test_a_local_ray_gets_the_cpus_of_the_cgroup_limit(tmp_path, monkeypatch, files, limit):
    import ray

    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    mine = len(os.sched_getaffinity(0))
    monkeypatch.setattr(ray_env, "CGROUP_ROOT", str(tmp_path))
    monkeypatch.setattr(os, "environ", dict(os.environ))  # start_ray sets defaults in the environment
    os.environ.pop("RAY_ADDRESS", None)
    seen = {}
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", lambda **kw: seen.update(kw))
    assert ray_env.start_ray({}) == "local"
    assert seen["num_cpus"] == (min(mine, limit) if limit else mine)


def test_worker_group_trial_drivers_stay_off_reclaimable_nodes(monkeypatch):
    import ray
    from ray import tune

    from kgsearch.sweep.tuner import make_trainable

    spec = load_spec("dans_fb15k237")
    requests = []
    monkeypatch.setattr(tune, "with_resources", lambda fn, request: requests.append(request) or fn)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, ray_env.DRIVER_RESOURCE: 100.0})
    make_trainable(spec, ctx=None)
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0})  # a local Ray has no such node
    make_trainable(spec, ctx=None)
    assert requests[0][ray_env.DRIVER_RESOURCE] > 0 and ray_env.DRIVER_RESOURCE not in requests[1]
    assert requests[0]["cpu"] == requests[1]["cpu"] == 0


def requirement(name: str) -> Requirement:
    deps = re.search(r"^dependencies = \[(.*?)^\]", (REPO / "pyproject.toml").read_text(), re.M | re.S).group(1)
    found = [Requirement(d) for d in re.findall(r'"([^"]+)"', deps)]
    return next(r for r in found if r.name == name)


@pytest.mark.parametrize("name,tested,outside", [
    ("ray", "2.60.0", ["2.59.0", "2.40.0", "2.61.0", "3.0.0"]),
    ("optuna", "5.0.0", ["4.5.0", "6.0.0"]),
])
def test_dependencies_are_pinned_to_the_tested_releases(name, tested, outside):
    from importlib.metadata import version

    spec = requirement(name).specifier
    assert Version(version(name)) in spec and Version(tested) in spec
    assert not [v for v in outside if Version(v) in spec]


def test_the_patch_of_ray_internals_says_clearly_when_ray_moved_it(monkeypatch):
    from ray.air.execution._internal.actor_manager import RayActorManager

    monkeypatch.delattr(RayActorManager, "_actor_task_failed")
    note = ray_env.survive_killed_trials()
    assert "RayActorManager._actor_task_failed" in note and "tested with Ray 2.60" in note


def test_the_patch_of_ray_internals_refuses_a_changed_signature(monkeypatch):
    from ray.air.execution._internal.actor_manager import RayActorManager

    monkeypatch.setattr(RayActorManager, "_actor_task_failed", lambda self, task, exception, retry: None)
    assert "kgsearch/sweep/ray_env.py" in ray_env.survive_killed_trials()
    assert RayActorManager._actor_task_failed.__code__.co_argcount == 4  # left as Ray has it
