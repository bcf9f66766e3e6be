"""Cluster files (cluster/): checked offline with Ray's own cluster-config validation, plus the invariants
the docs promise: the dashboard never leaves loopback, versions match this client, one set of allocator
settings and excludes, and every sweep a command names exists in search_spaces/.

`ray up` runs `prepare_config` (merge the provider's defaults.yaml, merge setup commands, check the
docker section, fill per-type min/max workers) and `validate_config` (ray-schema.json plus the
head/worker rules) before it touches the cloud; the tests call exactly those two.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from ray.autoscaler._private.util import prepare_config, validate_config
from ray.dashboard.modules.dashboard_sdk import parse_runtime_env_args
from ray.runtime_env import RuntimeEnv

from kgsearch.allocator import MALLOC_ENV

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHERS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
# `python -m kgsearch.sweep NAME ...` up to the end of the line (YAML strings and commented examples).
SWEEP_CMD = re.compile(r"python\s+-m\s+kgsearch\.sweep\s+([^\n`]*)")


def load(name: str) -> dict:
    return yaml.safe_load((CLUSTER / name).read_text(encoding="utf-8"))


def runtime_env() -> dict:
    return load("runtime_env.yaml")


def torch_pin() -> str:
    for line in (REPO / "constraints.txt").read_text().splitlines():
        m = re.fullmatch(r"\s*torch==(\S+)\s*", line)
        if m:
            return m.group(1)
    raise AssertionError("constraints.txt pins no torch version")


def docker_env(cfg: dict) -> dict[str, str]:
    """`-e NAME=VALUE` entries of docker.run_options."""
    env = {}
    for opt in cfg["docker"]["run_options"]:
        parts = shlex.split(opt)
        if parts[0] in ("-e", "--env"):
            name, _, value = parts[1].partition("=")
            env[name] = value
    return env


def prepared(name: str) -> dict:
    cfg = prepare_config(copy.deepcopy(load(name)))
    validate_config(cfg)
    return cfg


# ---------------------------------------------------------------------------------------------------
# Launcher YAMLs


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_passes_ray_cluster_config_validation(name):
    cfg = prepared(name)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = {k: v for k, v in types.items() if k != cfg["head_node_type"]}
    # A CPU head that takes no trial, and at least one autoscaling GPU worker type.
    assert head["resources"].get("CPU") == 0 and "GPU" not in head["resources"]
    assert head["max_workers"] == 0
    assert workers and all(t["resources"]["GPU"] >= 1 for t in workers.values())
    assert all(t["min_workers"] == 0 < t["max_workers"] <= cfg["max_workers"] for t in workers.values())
    # The kgsearch image holds torch, kgsearch and the datasets: a new node installs none of them.
    setup = cfg["head_setup_commands"] + cfg["worker_setup_commands"]
    assert not any(word in c for c in setup for word in ("torch", "kgsearch", "download"))


@pytest.mark.parametrize("name", LAUNCHERS)
def test_ray_validation_rejects_a_misspelt_key(name):
    # Proves the validation above is strict (additionalProperties: false), not a no-op.
    cfg = copy.deepcopy(load(name))
    cfg["available_node_types"][cfg["head_node_type"]]["max_worker"] = 1
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        validate_config(prepare_config(cfg))


@pytest.mark.parametrize("name", LAUNCHERS)
def test_dashboard_stays_on_loopback_and_nothing_else_is_opened(name):
    cfg = load(name)
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "0.0.0.0" not in yaml.safe_dump(cfg)
    provider = cfg["provider"]
    # AWS: Ray's own group rules only (SSH + intra-cluster); no extra inbound ports.
    assert "IpPermissions" not in provider.get("security_group", {})
    # Token auth on every node, with the token file the launcher mounts.
    env = docker_env(cfg)
    assert env["RAY_AUTH_MODE"] == "token"
    token_dir = str(Path(env["RAY_AUTH_TOKEN_PATH"]).parent)
    assert token_dir in cfg["file_mounts"]


def package_version() -> str:
    return re.search(r'^version = "([^"]+)"', (REPO / "pyproject.toml").read_text(), re.M).group(1)


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launchers_default_to_the_prebuilt_kgsearch_image(name):
    # Cold GPU nodes pull one image instead of pip-installing CUDA torch at every boot (issue 16, item 5).
    cfg = load(name)
    tag = package_version()
    assert cfg["docker"]["image"] == f"YOUR_REGISTRY/kgsearch:{tag}-gpu"
    assert cfg["docker"]["head_image"] == f"YOUR_REGISTRY/kgsearch:{tag}-cpu"
    text = (CLUSTER / name).read_text()
    # The build commands in the comments make exactly these two images from cluster/Dockerfile.
    assert f"-f cluster/Dockerfile -t YOUR_REGISTRY/kgsearch:{tag}-gpu ." in text
    assert f"-t YOUR_REGISTRY/kgsearch:{tag}-cpu ." in text
    # Ray adds --runtime=nvidia on hosts with the NVIDIA runtime; nothing adds --gpus all.
    assert "--gpus all" not in text


def test_rayjob_uses_the_image_of_this_version():
    containers = [c for group in [load("rayjob.yaml")["spec"]["rayClusterSpec"]["headGroupSpec"],
                                  *load("rayjob.yaml")["spec"]["rayClusterSpec"]["workerGroupSpecs"]]
                  for c in group["template"]["spec"]["containers"]]
    assert {c["image"] for c in containers} == {f"REGISTRY/kgsearch:{package_version()}-gpu"}


def test_allocator_settings_are_one_set_of_values_everywhere():
    wanted = MALLOC_ENV  # what the training processes apply to themselves (kgsearch/allocator.py)
    assert {k: v for k, v in runtime_env()["env_vars"].items() if k.startswith("MALLOC_")} == wanted
    for name in LAUNCHERS:
        env = docker_env(load(name))
        assert {k: v for k, v in env.items() if k.startswith("MALLOC_")} == wanted, name
    job_env = yaml.safe_load(load("rayjob.yaml")["spec"]["runtimeEnvYAML"])["env_vars"]
    assert job_env == runtime_env()["env_vars"]  # the RayJob carries the whole job environment
    dockerfile = (CLUSTER / "Dockerfile").read_text()
    for var, value in wanted.items():
        assert re.search(rf"\b{var}={value}\b", dockerfile), var


def test_runtime_env_is_what_ray_job_submit_accepts():
    env = parse_runtime_env_args(runtime_env=str(CLUSTER / "runtime_env.yaml"), working_dir=".")
    parsed = RuntimeEnv(**env)  # Ray's own field validation
    assert parsed["working_dir"] == "."
    assert {".git", ".venv", "data/caches"} <= set(parsed["excludes"])
    assert all(isinstance(v, str) for v in parsed["env_vars"].values())


def test_dockerfile_builds_on_the_matching_ray_image():
    text = (CLUSTER / "Dockerfile").read_text()
    assert f"ARG RAY_IMAGE=rayproject/ray:{ray.__version__}-" in text
    assert f'"torch=={torch_pin()}"' in text and "-c constraints.txt" in text
    ignored = set((CLUSTER / "Dockerfile.dockerignore").read_text().split())
    assert set(runtime_env()["excludes"]) <= ignored


def downloaded_datasets(text: str) -> set[str]:
    m = re.search(r"for d in ([a-z0-9 -]+); do python -m kgsearch\.data\.download", text)
    assert m, "no dataset download loop"
    return set(m.group(1).split())


def test_head_has_every_dataset_a_shipped_sweep_needs():
    # The driver (on the head) loads the dataset; trials get it from the object store. So the image
    # (launchers and KubeRay) and the launchers' install-on-boot alternative must hold every benchmark
    # that is not bundled.
    from kgsearch.data import BUNDLED, canonical_name
    from kgsearch.data.download import REGISTRY

    needed = {canonical_name(yaml.safe_load(p.read_text())["dataset"])
              for p in (REPO / "search_spaces").glob("*.yaml")} - set(BUNDLED)
    sources = {name: (CLUSTER / name).read_text() for name in LAUNCHERS}  # the commented alternative
    sources["Dockerfile"] = (CLUSTER / "Dockerfile").read_text()
    for src, text in sources.items():
        fetched = downloaded_datasets(text)
        assert fetched <= set(REGISTRY), src
        assert needed <= fetched, f"{src}: {sorted(needed - fetched)} not downloaded"


# ---------------------------------------------------------------------------------------------------
# KubeRay RayJob


def test_rayjob_has_the_fields_kuberay_needs():
    job = load("rayjob.yaml")
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", job["metadata"]["name"])  # DNS-1123 label
    spec = job["spec"]
    assert SWEEP_CMD.search(spec["entrypoint"])
    assert spec["shutdownAfterJobFinishes"] is True
    cluster = spec["rayClusterSpec"]
    assert cluster["rayVersion"] == ray.__version__
    head = cluster["headGroupSpec"]
    assert head["serviceType"] == "ClusterIP"  # dashboard only through kubectl port-forward
    assert head["rayStartParams"]["num-cpus"] == "0"
    (head_container,) = head["template"]["spec"]["containers"]
    assert head_container["image"] and "nvidia.com/gpu" not in head_container["resources"]["limits"]
    groups = cluster["workerGroupSpecs"]
    assert groups
    for group in groups:
        assert group["groupName"] and 0 <= group["minReplicas"] <= group["maxReplicas"]
        for container in group["template"]["spec"]["containers"]:
            limits = container["resources"]["limits"]
            assert int(limits["nvidia.com/gpu"]) >= 1
            assert container["resources"]["requests"]["nvidia.com/gpu"] == limits["nvidia.com/gpu"]
            assert container["image"] == head_container["image"]


# ---------------------------------------------------------------------------------------------------
# Every sweep command in the cluster files and the cluster guide


def sweep_commands() -> list[tuple[str, str]]:
    found = []
    for path in [*sorted(CLUSTER.iterdir()), REPO / "docs" / "cluster.md"]:
        if path.is_file():
            for m in SWEEP_CMD.finditer(path.read_text(encoding="utf-8")):
                found.append((path.relative_to(REPO).as_posix(), m.group(1).strip()))
    return found


def test_every_sweep_command_names_a_shipped_sweep():
    commands = sweep_commands()
    assert any(src == "cluster/rayjob.yaml" for src, _ in commands)
    shipped = {p.stem for p in (REPO / "search_spaces").glob("*.yaml")}
    names = []
    for src, args in commands:
        name = shlex.split(args.rstrip("\\ "))[0]
        if "/" in name or name.endswith((".yaml", ".yml")):
            continue  # a PATH: the user's own copy of a sweep file, as the CLI allows
        names.append(name)
        assert name in shipped, f"{src}: sweep {name!r} is not in search_spaces/ ({sorted(shipped)})"
    assert names


def test_cluster_sweeps_store_results_on_shared_storage():
    # Multi-node Tune needs storage every node reaches: a bucket URI, never a node-local path.
    for src, args in sweep_commands():
        if src.startswith("cluster/"):
            argv = shlex.split(args.rstrip("\\ "))
            assert "--storage" in argv, src
            assert re.match(r"(s3|gs)://", argv[argv.index("--storage") + 1]), src


# ---------------------------------------------------------------------------------------------------
# Cold nodes, stop and retry (issue 16, items 1, 4, 5, 6)


def test_jobs_wait_for_cold_gpu_nodes_and_stop_gracefully():
    for env in (runtime_env()["env_vars"], yaml.safe_load(load("rayjob.yaml")["spec"]["runtimeEnvYAML"])["env_vars"]):
        # Train's 60 s default fails DDP trials while a new GPU node still boots and pulls the image.
        assert float(env["RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S"]) >= 900
        # `ray job stop` SIGKILLs 3 s after its SIGTERM by default: too short to write the results.
        assert float(env["RAY_JOB_STOP_WAIT_TIME_S"]) >= 60


def test_trial_drivers_have_a_node_that_is_not_reclaimed():
    from kgsearch.sweep.ray_env import DRIVER_RESOURCE

    for name in LAUNCHERS:
        cfg = prepared(name)
        types = cfg["available_node_types"]
        assert types[cfg["head_node_type"]]["resources"].get(DRIVER_RESOURCE, 0) >= 1, name
        assert all(DRIVER_RESOURCE not in t["resources"] for k, t in types.items() if k != cfg["head_node_type"])
    head = load("rayjob.yaml")["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParams"]
    # KubeRay passes it to `ray start --resources`, a JSON object inside a quoted string.
    import json
    assert json.loads(json.loads(head["resources"]))[DRIVER_RESOURCE] >= 1


def test_a_retried_rayjob_continues_the_sweep():
    spec = load("rayjob.yaml")["spec"]
    argv = shlex.split(spec["entrypoint"])
    assert argv[argv.index("--resume") + 1] == "auto" and spec["backoffLimit"] >= 1


@pytest.mark.parametrize("doc", ["cluster.md", "ray.md"])
def test_doc_links_point_at_sections_that_exist(doc):
    text = re.sub(r"^```.*?^```", "", (REPO / "docs" / doc).read_text(encoding="utf-8"), flags=re.M | re.S)
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")  # GitHub's heading anchors
               for h in re.findall(r"^#+ (.+)$", text, re.M)}
    links = re.findall(r"\]\(#([^)]+)\)", text)
    assert not [a for a in links if a not in anchors], anchors
