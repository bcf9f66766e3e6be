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

REPO = Path(__file__).resolve().parents[1]
CLUSTER = REPO / "cluster"
LAUNCHERS = ["aws-gpu.yaml", "gcp-gpu.yaml"]
MALLOC_VARS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_")
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
    # prepare_config merged the common setup into both lists: our installs are what runs.
    assert any("torch==" in c for c in cfg["head_setup_commands"])
    assert any("torch==" in c for c in cfg["worker_setup_commands"])


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


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_versions_match_this_client(name):
    cfg = load(name)
    version = ray.__version__
    images = [cfg["docker"]["image"], cfg["docker"]["head_image"]]
    assert all(img.startswith(f"rayproject/ray:{version}-") for img in images), images
    assert cfg["docker"]["image"].endswith("-gpu") and cfg["docker"]["head_image"].endswith("-cpu")
    setup = cfg["head_setup_commands"] + cfg["worker_setup_commands"]
    assert all(f"ray[default,tune,train]=={version}" in c for c in setup if "-e /home/ray/kgsearch" in c)
    pin = f"torch=={torch_pin()}"
    # The head takes the CPU wheel, GPU workers the CUDA wheel PyPI serves by default.
    assert any(pin in c and "whl/cpu" in c for c in cfg["head_setup_commands"])
    assert any(pin in c and "whl/cpu" not in c for c in cfg["worker_setup_commands"])
    assert all("-c /home/ray/kgsearch/constraints.txt" in c for c in setup if "-e /home/ray/kgsearch" in c)


@pytest.mark.parametrize("name", LAUNCHERS)
def test_launcher_ships_the_checkout_without_the_runtime_env_excludes(name):
    cfg = load(name)
    assert cfg["file_mounts"]["/home/ray/kgsearch"] == "."
    assert set(runtime_env()["excludes"]) <= set(cfg["rsync_exclude"])


def test_allocator_settings_are_one_set_of_values_everywhere():
    wanted = runtime_env()["env_vars"]
    assert set(wanted) == set(MALLOC_VARS)
    for name in LAUNCHERS:
        env = docker_env(load(name))
        assert {k: env[k] for k in MALLOC_VARS} == wanted, name
    job_env = yaml.safe_load(load("rayjob.yaml")["spec"]["runtimeEnvYAML"])["env_vars"]
    assert job_env == wanted
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
    # The driver (on the head) loads the dataset; trials get it from the object store. So the head's
    # setup (launchers) and the image (KubeRay) must hold every benchmark that is not bundled.
    from kgsearch.data import BUNDLED, canonical_name
    from kgsearch.data.download import REGISTRY

    needed = {canonical_name(yaml.safe_load(p.read_text())["dataset"])
              for p in (REPO / "search_spaces").glob("*.yaml")} - set(BUNDLED)
    sources = {name: " ".join(load(name)["head_setup_commands"]) for name in LAUNCHERS}
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
