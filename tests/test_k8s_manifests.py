"""The k8s/ kustomizations render, validate against Kubernetes 1.30, and agree with the code.

Every overlay (and the top-level k8s/ that `kubectl apply -k k8s/` uses) is rendered
offline with `kubectl kustomize`; prod's secrets are made by its documented
generate.sh in a temporary copy. The checks then read the rendered objects: the
environment variables, ports, probes, DSNs and addresses must be ones the services
really read and serve, enumerated from the code at test time.
"""

from __future__ import annotations

import asyncio
import importlib
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import grpc
import pytest
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc

from loomflow import suite
from loomflow.kernel import config
from loomflow.kernel.auth import AuthSettings, Role, TokenVerifier
from loomflow.kernel.settings import ServerSettings
from loomflow.testing.processes import ServeProcess, free_port, source_env
from loomflow.v1 import agent_pb2, agent_pb2_grpc, audit_pb2, audit_pb2_grpc, tenancy_pb2
from tests.support.manifests import (
    K8S,
    PROD_DATABASES,
    Obj,
    Peer,
    Rendered,
    copy_with_prod_secrets,
    hosted_services,
    image_name,
    kustomize,
    main_container,
    named_port,
    pod_labels,
    pod_spec,
    read_env_file,
    selector_matches,
    service_target_port,
)

KUBERNETES_VERSION = "1.30.0"
DEV_SECRETS = K8S / "overlays" / "dev" / "secrets"
DSN_SCHEMES = {"postgres", "postgresql", "redis", "rediss"}
# Where each kind of DSN must point: the in-cluster Service of that backend.
BACKEND_OF_SCHEME = {"postgres": "postgres", "postgresql": "postgres", "redis": "redis", "rediss": "redis"}
# Overlays with the in-cluster-databases component; prod points its DSNs at managed databases.
IN_CLUSTER_DATABASES = {"dev", "top", "dev-tls"}
OVERLAYS = ("dev", "prod", "top", "dev-tls")
# Custom resources of optional components (k8s/components/): not in the core schemas, so the strict
# schema check skips exactly these kinds, by name; every other object must pass it.
CUSTOM_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
}


# ---------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Rendered]:
    copy = copy_with_prod_secrets(tmp_path_factory.mktemp("k8s"))
    return {
        "dev": Rendered(kustomize(K8S / "overlays" / "dev")),
        "prod": Rendered(kustomize(copy / "overlays" / "prod")),
        "top": Rendered(kustomize(K8S)),
        "dev-tls": Rendered(kustomize(K8S / "overlays" / "dev-tls")),
        "base": Rendered(kustomize(K8S / "base")),
    }


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest, rendered: dict[str, Rendered]) -> Rendered:
    result: Rendered = rendered[request.param]
    return result


def test_top_level_kustomization_deploys_the_dev_overlay(rendered: dict[str, Rendered]) -> None:
    assert rendered["top"].text == rendered["dev"].text, "kubectl apply -k k8s/ must apply exactly overlays/dev"


def test_base_carries_no_secrets_so_dev_values_cannot_reach_prod(rendered: dict[str, Rendered]) -> None:
    assert rendered["base"].of_kind("Secret") == [], "Secrets belong to the overlays (dev-only values vs generated)"
    prod_secret_values = {
        v
        for s in rendered["prod"].of_kind("Secret")
        for v in rendered["prod"].data("Secret", s["metadata"]["name"]).values()
    }
    dev_secret_values = {
        v
        for s in rendered["dev"].of_kind("Secret")
        for v in rendered["dev"].data("Secret", s["metadata"]["name"]).values()
    }
    assert not prod_secret_values & dev_secret_values, "a dev-only secret value leaked into prod"


@pytest.mark.parametrize("name", OVERLAYS)
def test_rendered_manifests_validate_strictly_against_kubernetes_schemas(
    name: str, rendered: dict[str, Rendered]
) -> None:
    core = [o for o in rendered[name].objects if (o["apiVersion"], o["kind"]) not in CUSTOM_KINDS]
    done = subprocess.run(
        [sys.executable, "-m", "kubernetes_validate", "--strict", "-k", KUBERNETES_VERSION, "-"],
        input=yaml.safe_dump_all(core),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"kubernetes-validate rejected the {name} manifests:\n{output}"
    # An unknown kind only warns; every object must really have been checked.
    assert "WARN" not in output, output
    passed = [line for line in output.splitlines() if line.startswith("INFO") and " passed " in line]
    assert len(passed) == len(core), output


# ---------------------------------------------------------------- the code's view


def options_of(sections: list[str]) -> dict[str, config.OptionInfo]:
    known = dict(suite.sections())
    return {o.env: o for s in sections for o in config.options(s, known[s])}


def sections_hosted(container: Obj) -> list[str]:
    """The settings sections a `loomflow serve --services …` process reads."""
    names = [n.strip() for n in hosted_services(container).split(",") if n.strip()]
    return ["", "auth", "retention"] + [suite.service_module(n).SECTION for n in names]


def full_service_name(service: str) -> str:
    """The gRPC full name the server registers (and reports health for) when it hosts ``service``."""
    descriptor = importlib.import_module(f"loomflow.v1.{service}_pb2").DESCRIPTOR
    names = [s.full_name for s in descriptor.services_by_name.values()]
    assert len(names) == 1, f"{service}.proto should declare exactly one gRPC service, found {names}"
    return str(names[0])


def all_grpc_service_names() -> set[str]:
    return {full_service_name(n) for n in suite.SERVICE_NAMES}


def server_setting(env: dict[str, str], name: str) -> Any:
    return getattr(config.load("", ServerSettings, env=env), name)


def loomflow_containers(overlay: Rendered) -> Iterator[tuple[Obj, Obj, dict[str, str]]]:
    """(workload, container, resolved env) for every container running the loomflow image."""
    for workload, container in overlay.containers():
        if image_name(container) == "loomflow":
            yield workload, container, overlay.env(container)


# ---------------------------------------------------------------- env vars and references


def test_every_loomflow_variable_is_an_option_the_hosted_services_read(overlay: Rendered) -> None:
    everywhere = options_of([s for s, _ in suite.sections()])
    for workload, container, env in loomflow_containers(overlay):
        readable = options_of(sections_hosted(container))
        for variable in sorted(v for v in env if v.startswith(config.ENV_PREFIX)):
            where = f"{workload['metadata']['name']}: {variable}"
            assert variable in everywhere, f"{where} is read by no loomflow code (misspelt or not implemented yet)"
            assert variable in readable, f"{where} belongs to a service this pod does not host"


def test_no_other_container_or_unused_config_carries_loomflow_variables(overlay: Rendered) -> None:
    for workload, container in overlay.containers():
        if image_name(container) != "loomflow":
            stray = [v for v in overlay.env(container) if v.startswith(config.ENV_PREFIX)]
            assert not stray, f"{workload['metadata']['name']} is not a loomflow container but sets {stray}"
    consumed = {v for _, _, env in loomflow_containers(overlay) for v in env}
    for kind in ("ConfigMap", "Secret"):
        for obj in overlay.of_kind(kind):
            unused = [
                k
                for k in overlay.data(kind, obj["metadata"]["name"])
                if k.startswith(config.ENV_PREFIX) and k not in consumed
            ]
            assert not unused, f"{kind} {obj['metadata']['name']} holds {unused}, which no loomflow pod receives"


def test_every_variable_value_parses_as_its_option_type(overlay: Rendered) -> None:
    known = dict(suite.sections())
    for workload, container, env in loomflow_containers(overlay):
        for section in sections_hosted(container):
            try:
                config.load(section, known[section], env=env)
            except config.ConfigError as exc:
                pytest.fail(f"{workload['metadata']['name']}: {exc}")


def test_every_secret_configmap_and_service_account_reference_resolves(overlay: Rendered) -> None:
    assert overlay.dangling_references() == []


def test_no_pod_runs_in_insecure_mode(overlay: Rendered) -> None:
    for workload, container, env in loomflow_containers(overlay):
        assert not server_setting(env, "insecure"), f"{workload['metadata']['name']} sets LOOMFLOW_INSECURE"
        assert "--insecure" not in [str(a) for a in container.get("args", [])]


# ---------------------------------------------------------------- services, ports and probes


def test_each_loomflow_service_runs_in_exactly_one_deployment_of_its_own(overlay: Rendered) -> None:
    deployments = overlay.loomflow_deployments()
    assert sorted(deployments) == sorted(suite.SERVICE_NAMES), "one Deployment per service, each `--services <one>`"
    for service, deployment in deployments.items():
        assert deployment["metadata"]["name"] == service
        container = main_container(deployment)
        env = overlay.env(container)
        assert "LOOMFLOW_SERVICES" not in env, "--services in args is the single source of what a pod hosts"
        assert server_setting(env, "host") == "0.0.0.0", f"{service} must listen on all interfaces in a pod"


def test_container_ports_equal_the_configured_grpc_and_metrics_ports(overlay: Rendered) -> None:
    for workload, container, env in loomflow_containers(overlay):
        name = workload["metadata"]["name"]
        assert named_port(container, "grpc") == server_setting(env, "port"), f"{name}: grpc containerPort"
        assert named_port(container, "metrics") == server_setting(env, "metrics_port"), f"{name}: metrics port"


def test_probes_are_native_grpc_on_the_served_port_and_real_service_names(overlay: Rendered) -> None:
    real_names = all_grpc_service_names() | {""}  # "" = the server's overall health
    for workload, container, env in loomflow_containers(overlay):
        name = workload["metadata"]["name"]
        served = {full_service_name(s) for s in hosted_services(container).split(",")}
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = container.get(kind)
            assert probe is not None, f"{name}: no {kind}"
            assert "grpc" in probe, f"{name}: {kind} must be a native gRPC probe"
            port = probe["grpc"]["port"]
            assert isinstance(port, int), f"{name}: {kind} port must be a number, got {port!r}"
            # With TLS on the gRPC port, probes (which speak no TLS) use the plaintext health port.
            probed = server_setting(env, "health_port") or server_setting(env, "port")
            assert port == probed, f"{name}: {kind} probes port {port}"
            service = probe["grpc"].get("service", "")
            assert service in real_names, f"{name}: {kind} asks for health of unknown service {service!r}"
            assert service in served | {""}, f"{name}: {kind} asks for {service!r}, which this pod does not host"
        readiness = container["readinessProbe"]["grpc"].get("service", "")
        assert readiness in served, f"{name}: readiness must follow the hosted service's own health"


def test_services_route_their_port_to_the_grpc_container_port(overlay: Rendered) -> None:
    for service_name, deployment in overlay.loomflow_deployments().items():
        service = overlay.get("Service", service_name)
        assert overlay.pods_selected_by(service) == [deployment], f"Service {service_name} must select only its pods"
        container = main_container(deployment)
        port = int(service["spec"]["ports"][0]["port"])
        assert service_target_port(service, port, deployment) == named_port(container, "grpc")


def test_services_expose_the_metrics_port(overlay: Rendered) -> None:
    for service_name, deployment in overlay.loomflow_deployments().items():
        service = overlay.get("Service", service_name)
        ports = {p["name"]: p for p in service["spec"]["ports"]}
        assert "metrics" in ports, f"Service {service_name} does not expose the metrics port"
        port = int(ports["metrics"]["port"])
        assert service_target_port(service, port, deployment) == named_port(main_container(deployment), "metrics")


def test_agent_addresses_reach_the_deployment_hosting_each_service(overlay: Rendered) -> None:
    deployments = overlay.loomflow_deployments()
    agent_env = overlay.env(main_container(deployments["agent"]))
    for dependency in ("memory", "budget", "policy", "audit"):
        variable = f"LOOMFLOW_AGENT_{dependency.upper()}_ADDRESS"
        address = agent_env.get(variable, "")
        assert address, f"{variable} is empty: the Agent would call its own process, which hosts only the Agent"
        # Per-call balancing: the DNS resolver plus a headless Service gives the channel every replica.
        assert address.startswith("dns:///"), f"{variable}={address}: resolve every replica with a dns:/// target"
        host, _, port = address.removeprefix("dns:///").rpartition(":")
        service = overlay.find("Service", host)
        assert service is not None, f"{variable}={address}: no Service named {host!r}"
        assert service["spec"].get("clusterIP") == "None", f"Service {host} must be headless for per-call balancing"
        targets = overlay.pods_selected_by(service)
        assert targets == [deployments[dependency]], f"{variable}={address} does not reach the {dependency} pods"
        container = main_container(targets[0])
        assert service_target_port(service, int(port), targets[0]) == named_port(container, "grpc")


def test_dsns_use_accepted_schemes_and_point_at_the_in_cluster_backends(overlay: Rendered) -> None:
    if overlay.find("StatefulSet", "postgres") is None:
        pytest.skip("no in-cluster databases here: test_prod_dsns_name_the_managed_databases covers it")
    # What the backends themselves are given: the init script's role and database, Redis's password.
    postgres_env = overlay.env(main_container(overlay.get("StatefulSet", "postgres")))
    redis_env = overlay.env(main_container(overlay.get("StatefulSet", "redis")))
    seen = 0
    for workload, _, env in loomflow_containers(overlay):
        for variable, dsn in env.items():
            if not (variable.startswith(config.ENV_PREFIX) and variable.endswith("_DSN")):
                continue
            seen += 1
            where = f"{workload['metadata']['name']}: {variable}"
            url = urlsplit(dsn)
            assert url.scheme in DSN_SCHEMES, (
                f"{where} has scheme {url.scheme!r}; in-cluster state lives in Postgres/Redis"
            )
            backend = overlay.get("StatefulSet", BACKEND_OF_SCHEME[url.scheme])
            service = overlay.get("Service", str(url.hostname))
            assert overlay.pods_selected_by(service) == [backend], f"{where}: host {url.hostname} is not the backend"
            assert url.port is not None, f"{where}: name the port explicitly"
            assert (
                service_target_port(service, url.port, backend) == main_container(backend)["ports"][0]["containerPort"]
            )
            if backend["metadata"]["name"] == "postgres":
                assert url.username == postgres_env["APP_DB_USER"], f"{where}: not the role the init script creates"
                assert url.password == postgres_env["APP_DB_PASSWORD"], f"{where}: password differs from the role's"
                assert url.path == "/" + postgres_env["POSTGRES_DB"], f"{where}: not the initialised database"
            else:
                assert url.password == redis_env["REDIS_PASSWORD"], f"{where}: password differs from Redis's"
                args = [str(a) for a in main_container(backend).get("args", [])]
                assert "--requirepass" in args, "Redis must require the password the DSNs carry"
                password_arg = args[args.index("--requirepass") + 1]
                assert password_arg == "$(REDIS_PASSWORD)", f"Redis's password is not REDIS_PASSWORD: {args}"
    assert seen >= 4, "memory, budget, policy and audit each need a DSN"


def test_budget_uses_redis_and_memory_policy_audit_use_postgres(overlay: Rendered) -> None:
    deployments = overlay.loomflow_deployments()
    expected = {"memory": "postgres", "budget": "redis", "policy": "postgres", "audit": "postgres"}
    for service, scheme in expected.items():
        dsn = overlay.env(main_container(deployments[service]))[f"LOOMFLOW_{service.upper()}_DSN"]
        assert BACKEND_OF_SCHEME[urlsplit(dsn).scheme] == scheme, f"{service} should use {scheme}: {dsn}"


def test_prod_dsns_name_the_managed_databases(rendered: dict[str, Rendered]) -> None:
    """Prod runs no databases: its DSNs are the ones the operator gave generate.sh, hosts outside the overlay."""
    prod = rendered["prod"]
    for workload, _, env in loomflow_containers(prod):
        for variable, dsn in env.items():
            if variable.endswith("_DSN"):
                expected = PROD_DATABASES["REDIS_URL" if variable == "LOOMFLOW_BUDGET_DSN" else "POSTGRES_DSN"]
                assert dsn == expected, f"{workload['metadata']['name']}: {variable}"
                assert prod.find("Service", str(urlsplit(dsn).hostname)) is None


def test_in_cluster_databases_are_an_optional_component(rendered: dict[str, Rendered]) -> None:
    assert rendered["base"].of_kind("StatefulSet") == [], "the databases belong to components/in-cluster-databases"
    for name, overlay in rendered.items():
        if name == "base":
            continue
        has = name in IN_CLUSTER_DATABASES
        databases = sorted(s["metadata"]["name"] for s in overlay.of_kind("StatefulSet"))
        assert databases == (["postgres", "redis"] if has else []), name
        policies = {p["metadata"]["name"] for p in overlay.of_kind("NetworkPolicy")}
        assert ({"postgres-from-services", "redis-from-budget"} <= policies) == has, f"{name}: {policies}"


def migrate_job(overlay: Rendered) -> Obj:
    (job,) = overlay.of_kind("Job")
    assert main_container(job)["command"] == ["loomflow", "migrate"]
    return job


def test_every_overlay_runs_migrate_as_a_job_with_the_services_settings(overlay: Rendered) -> None:
    job = migrate_job(overlay)
    env = overlay.env(main_container(job))
    assert pod_spec(job)["restartPolicy"] == "OnFailure"
    for workload, _, service_env in loomflow_containers(overlay):
        for variable in service_env:
            if variable.endswith("_DSN"):
                assert variable in env, f"migrate does not migrate {workload['metadata']['name']}'s {variable}"
    assert "LOOMFLOW_INSECURE" not in env


def test_migrate_job_reaches_the_in_cluster_postgres(rendered: dict[str, Rendered]) -> None:
    for name in IN_CLUSTER_DATABASES:
        overlay = rendered[name]
        postgres = overlay.get("StatefulSet", "postgres")
        port = int(main_container(postgres)["ports"][0]["containerPort"])
        assert overlay.may_connect(pod_peer(overlay, migrate_job(overlay)), postgres, port), name


def test_prod_services_run_without_ddl_and_only_the_job_migrates_as_the_owner(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    for workload, _, env in loomflow_containers(prod):
        assert server_setting(env, "migrate") is False, f"{workload['metadata']['name']} would apply DDL at start"
    job_env = prod.env(main_container(migrate_job(prod)))
    for variable in ("LOOMFLOW_MEMORY_DSN", "LOOMFLOW_POLICY_DSN", "LOOMFLOW_AUDIT_DSN", "LOOMFLOW_AGENT_STORE_DSN"):
        assert job_env[variable] == PROD_DATABASES["POSTGRES_OWNER_DSN"], variable
    dev = rendered["dev"]
    for workload, _, env in loomflow_containers(dev):
        assert server_setting(env, "migrate") is True, f"{workload['metadata']['name']}: dev migrates at start"


# ---------------------------------------------------------------- lifecycle and security


def test_termination_grace_outlasts_the_servers_drain(overlay: Rendered) -> None:
    for workload, _, env in loomflow_containers(overlay):
        drain = server_setting(env, "shutdown_delay") + server_setting(env, "shutdown_grace")
        budget = pod_spec(workload).get("terminationGracePeriodSeconds", 30)
        assert budget > drain, f"{workload['metadata']['name']}: SIGKILL after {budget}s cuts a {drain}s drain short"
        assert server_setting(env, "shutdown_delay") > 0, "keep serving while endpoints are being removed"


def test_every_pod_meets_the_restricted_security_profile(overlay: Rendered) -> None:
    for workload in overlay.pod_templates():
        name = workload["metadata"]["name"]
        spec = pod_spec(workload)
        pod = spec.get("securityContext", {})
        assert pod.get("runAsNonRoot") is True, f"{name}: runAsNonRoot"
        assert isinstance(pod.get("runAsUser"), int), f"{name}: numeric runAsUser"
        assert pod["runAsUser"] > 0, f"{name}: runAsUser must not be root"
        assert pod.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: seccomp RuntimeDefault"
        assert not any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")), f"{name}: host namespaces"
        assert not any("hostPath" in v for v in spec.get("volumes", [])), f"{name}: hostPath volume"
        assert spec.get("automountServiceAccountToken") is False, f"{name}: no pod needs the Kubernetes API"
        assert spec.get("enableServiceLinks") is False, f"{name}: service-link variables pollute the environment"
        for container in spec["containers"]:
            sc = container.get("securityContext", {})
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
            assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: drop ALL capabilities"
            assert not sc.get("capabilities", {}).get("add"), f"{name}: adds capabilities"
            assert not sc.get("privileged"), f"{name}: privileged"


def test_loomflow_pods_get_writable_scratch_and_data_folders(overlay: Rendered) -> None:
    for workload, container, env in loomflow_containers(overlay):
        volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
        mounts = {m["mountPath"]: volumes[m["name"]] for m in container.get("volumeMounts", [])}
        for path in ("/tmp", server_setting(env, "data_dir")):
            assert path in mounts, f"{workload['metadata']['name']}: {path} is read-only (no volume mounted)"
            assert "emptyDir" in mounts[path], f"{workload['metadata']['name']}: {path} should be an emptyDir"


def test_every_container_declares_requests_and_a_memory_limit(overlay: Rendered) -> None:
    jobs = [(job, container) for job in overlay.of_kind("Job") for container in pod_spec(job)["containers"]]
    for workload, container in [*overlay.containers(), *jobs]:
        resources = container.get("resources", {})
        where = f"{workload['metadata']['name']}/{container['name']}"
        assert {"cpu", "memory"} <= set(resources.get("requests", {})), f"{where}: cpu and memory requests"
        assert "memory" in resources.get("limits", {}), f"{where}: memory limit"


# What the API server accepts as a container resource name: the standard ones, hugepages of a size,
# or an extended resource with a domain prefix (nvidia.com/gpu). The schemas only say "a map".
STANDARD_RESOURCES = {"cpu", "memory", "ephemeral-storage"}
RESOURCE_NAME = re.compile(r"^(hugepages-[0-9]+[KMG]i|[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[-A-Za-z0-9_.]+)$")


@pytest.mark.parametrize("name", ["base", *OVERLAYS])
def test_container_resource_names_are_ones_the_api_server_accepts(name: str, rendered: dict[str, Rendered]) -> None:
    """base included: an overlay that replaces resources wholesale hid `requests: {agent: 256Mi}` in base."""
    for workload, container in rendered[name].containers():
        where = f"{name}: {workload['metadata']['name']}/{container['name']}"
        for kind in ("requests", "limits"):
            for resource in container.get("resources", {}).get(kind, {}):
                assert resource in STANDARD_RESOURCES or RESOURCE_NAME.match(resource), (
                    f"{where}: {kind} names {resource!r}, which is no resource the API server accepts"
                )


def test_prometheus_scrapes_the_configured_metrics_port(overlay: Rendered) -> None:
    for workload, _, env in loomflow_containers(overlay):
        annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
        where = workload["metadata"]["name"]
        assert annotations.get("prometheus.io/scrape") == "true", f"{where}: prometheus.io/scrape"
        assert annotations.get("prometheus.io/port") == str(server_setting(env, "metrics_port")), where
        assert annotations.get("prometheus.io/path") == "/metrics", where
        assert server_setting(env, "metrics_port") > 0, f"{where}: metrics endpoint disabled"


# ---------------------------------------------------------------- network policies


def pod_peer(overlay: Rendered, workload: Obj) -> Peer:
    namespace = overlay.namespace_of(workload)
    return Peer(namespace, pod_labels(workload), {"kubernetes.io/metadata.name": namespace})


def test_network_policies_let_only_the_agent_reach_services_and_only_their_users_reach_backends(
    overlay: Rendered,
) -> None:
    deployments = overlay.loomflow_deployments()
    backends = {s["metadata"]["name"]: s for s in overlay.of_kind("StatefulSet")}
    namespace = overlay.namespace_of(deployments["agent"])
    sources: dict[str, Peer] = {name: pod_peer(overlay, w) for name, w in (deployments | backends).items()}
    sources["outside the cluster"] = Peer(None)
    sources["another pod in the namespace"] = Peer(namespace, {"app.kubernetes.io/name": "debug"})
    sources["prometheus"] = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"}, {"team": "ops"})

    # Who uses which backend, as the DSNs say.
    users_of: dict[str, set[str]] = {name: set() for name in backends}
    for service, deployment in deployments.items():
        for variable, value in overlay.env(main_container(deployment)).items():
            if variable.endswith("_DSN") and BACKEND_OF_SCHEME.get(urlsplit(value).scheme) in users_of:
                users_of[BACKEND_OF_SCHEME[urlsplit(value).scheme]].add(service)

    for target_name, target in deployments.items():
        port = named_port(main_container(target), "grpc")
        for source_name, source in sources.items():
            allowed = overlay.may_connect(source, target, port)
            expected = target_name == "agent" or source_name == "agent"
            assert allowed == expected, f"{source_name} → {target_name}:{port} allowed={allowed}, expected {expected}"
        metrics = named_port(main_container(target), "metrics")
        for source_name, source in sources.items():
            expected = source_name == "prometheus"
            assert overlay.may_connect(source, target, metrics) == expected, f"{source_name} → {target_name} metrics"
    for backend_name, backend in backends.items():
        port = int(main_container(backend)["ports"][0]["containerPort"])
        for source_name, source in sources.items():
            expected = source_name in users_of[backend_name]
            allowed = overlay.may_connect(source, backend, port)
            assert allowed == expected, f"{source_name} → {backend_name}:{port} allowed={allowed}, expected {expected}"


# ---------------------------------------------------------------- overlays


def test_dev_runs_one_replica_of_everything_without_autoscaling(rendered: dict[str, Rendered]) -> None:
    dev = rendered["dev"]
    for workload in dev.workloads():
        assert workload["spec"].get("replicas") == 1, f"{workload['metadata']['name']} in dev"
    assert dev.of_kind("HorizontalPodAutoscaler") == []
    assert dev.of_kind("PodDisruptionBudget") == []


def test_prod_scales_the_agent_with_an_hpa_and_runs_redundant_services(rendered: dict[str, Rendered]) -> None:
    prod = rendered["prod"]
    deployments = prod.loomflow_deployments()
    (hpa,) = prod.of_kind("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployments["agent"]["metadata"]["name"])
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    assert "replicas" not in deployments["agent"]["spec"], "the HPA owns the Agent's replica count"
    cpu_requested = main_container(deployments["agent"])["resources"]["requests"].get("cpu")
    assert cpu_requested, "a CPU-utilisation HPA needs a CPU request"
    for service, deployment in deployments.items():
        if service != "agent":
            assert deployment["spec"]["replicas"] >= 2, f"{service} should survive losing one pod"


def test_prod_guards_every_service_with_a_disruption_budget_and_topology_spread(
    rendered: dict[str, Rendered],
) -> None:
    prod = rendered["prod"]
    budgets = prod.of_kind("PodDisruptionBudget")
    for service, deployment in prod.loomflow_deployments().items():
        labels = pod_labels(deployment)
        guarding = [b for b in budgets if selector_matches(b["spec"]["selector"], labels)]
        assert len(guarding) == 1, f"{service}: expected one PodDisruptionBudget, found {len(guarding)}"
        constraints = pod_spec(deployment).get("topologySpreadConstraints", [])
        keys = {c["topologyKey"] for c in constraints}
        assert {"kubernetes.io/hostname", "topology.kubernetes.io/zone"} <= keys, f"{service}: spread {keys}"
        for constraint in constraints:
            assert selector_matches(constraint["labelSelector"], labels), f"{service}: spread selects other pods"
            assert "app.kubernetes.io/name" in constraint.get("matchLabelKeys", []), f"{service}: spread per service"


def test_prod_sets_cpu_and_memory_limits_on_every_container(rendered: dict[str, Rendered]) -> None:
    for workload, container in rendered["prod"].containers():
        limits = container.get("resources", {}).get("limits", {})
        assert {"cpu", "memory"} <= set(limits), f"{workload['metadata']['name']}: limits {limits}"


# ---------------------------------------------------------------- secrets


def test_tls_component_mounts_each_pods_own_certificate_and_requires_client_certs_internally(
    rendered: dict[str, Rendered],
) -> None:
    overlay = rendered["dev-tls"]
    issued = {c["spec"]["secretName"]: c for c in overlay.of_kind("Certificate")}
    for service, deployment in overlay.loomflow_deployments().items():
        container = main_container(deployment)
        env = overlay.env(container)
        mounts = {m["name"]: m["mountPath"] for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod_spec(deployment).get("volumes", [])}
        secret = volumes["tls"]["secret"]["secretName"]
        assert secret in issued, f"{service}: mounts Secret {secret}, which no Certificate issues"
        assert service in issued[secret]["spec"]["dnsNames"], f"{service}: its certificate does not name {service}"
        wanted = ["LOOMFLOW_TLS_CERT", "LOOMFLOW_TLS_KEY"]
        own_channels = ["LOOMFLOW_AGENT_TLS_CA", "LOOMFLOW_AGENT_TLS_CERT"]
        wanted += own_channels if service == "agent" else ["LOOMFLOW_TLS_CLIENT_CA"]
        for variable in wanted:
            assert env.get(variable, "").startswith(mounts["tls"] + "/"), f"{service}: {variable} not in the mount"
        if service == "agent":
            assert "LOOMFLOW_TLS_CLIENT_CA" not in env, "end users reach the Agent without client certificates"


def test_pod_monitor_scrapes_the_metrics_port_of_every_service_pod(rendered: dict[str, Rendered]) -> None:
    overlay = rendered["dev-tls"]
    (monitor,) = overlay.of_kind("PodMonitor")
    selected = [w for w in overlay.workloads() if selector_matches(monitor["spec"]["selector"], pod_labels(w))]
    assert sorted(selected, key=lambda w: w["metadata"]["name"]) == sorted(
        overlay.loomflow_deployments().values(), key=lambda w: w["metadata"]["name"]
    ), "the PodMonitor must select exactly the loomflow service pods"
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    for workload in selected:
        env = overlay.env(main_container(workload))
        assert named_port(main_container(workload), endpoint["port"]) == server_setting(env, "metrics_port")
    assert endpoint["path"] == "/metrics"


def test_component_objects_live_in_the_suites_namespace(rendered: dict[str, Rendered]) -> None:
    custom = [o for o in rendered["dev-tls"].objects if (o["apiVersion"], o["kind"]) in CUSTOM_KINDS]
    assert custom, "the dev-tls overlay rendered no component objects"
    for obj in custom:
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        assert obj["metadata"].get("namespace") == "loomflow", f"{where} would land in the default namespace"


def test_dev_secret_files_are_marked_dev_only() -> None:
    files = sorted(DEV_SECRETS.glob("*.env"))
    assert files, "dev secrets missing"
    for path in files:
        assert path.read_text().startswith("# DEV ONLY"), f"{path.name} must open with a DEV ONLY warning"
        for key, value in read_env_file(path).items():
            assert value, f"{path.name}: {key} is empty"


@pytest.mark.parametrize("name", ["dev", "prod"])
def test_the_agents_service_token_is_accepted_by_the_services(name: str, rendered: dict[str, Rendered]) -> None:
    overlay = rendered[name]
    deployments = overlay.loomflow_deployments()
    agent_env = overlay.env(main_container(deployments["agent"]))
    for service, deployment in deployments.items():
        env = overlay.env(main_container(deployment))
        verifier = TokenVerifier(config.load("auth", AuthSettings, env=env))
        principal = verifier.verify(agent_env["LOOMFLOW_AUTH_SERVICE_TOKEN"])
        assert principal.role is Role.SERVICE, f"{service} would not treat the Agent as a service principal"


def test_prod_secret_generator_refuses_to_overwrite_existing_secrets(tmp_path: Path) -> None:
    copy = copy_with_prod_secrets(tmp_path)
    script = copy / "overlays" / "prod" / "secrets" / "generate.sh"
    before = (script.parent / "audit-keys.env").read_text()
    again = subprocess.run(["bash", str(script)], capture_output=True, text=True, timeout=60)
    assert again.returncode != 0, "re-running generate.sh must not silently rotate keys"
    assert (script.parent / "audit-keys.env").read_text() == before


# ---------------------------------------------------------------- Postgres schema init, for real

INIT_SCRIPT = K8S / "components" / "in-cluster-databases" / "postgres" / "10-loomflow-role.sh"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


@dataclass(frozen=True)
class InitialisedDatabase:
    app_dsn: str
    database: str
    role: str


@pytest.fixture
async def initialised_database(postgres_dsn: str, unique: str) -> AsyncIterator[InitialisedDatabase]:
    """A fresh database set up by the manifests' init script, as the postgres image would run it."""
    admin = urlsplit(postgres_dsn)
    database, role, password = f"k8s_init_{unique}", f"k8s_app_{unique}", secrets.token_hex(16)
    connection = await asyncpg.connect(postgres_dsn)
    try:
        await connection.execute(f'CREATE DATABASE "{database}"')
        env = {
            **os.environ,
            "PATH": f"{PG_BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PGHOST": str(admin.hostname),
            "PGPORT": str(admin.port),
            "PGPASSWORD": admin.password or "",
            "POSTGRES_USER": str(admin.username),
            "POSTGRES_DB": database,
            "APP_DB_USER": role,
            "APP_DB_PASSWORD": password,
        }
        done = await asyncio.to_thread(
            subprocess.run, ["bash", str(INIT_SCRIPT)], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, f"the init script failed:\n{done.stdout}\n{done.stderr}"
        netloc = f"{role}:{password}@{admin.hostname}:{admin.port}"
        yield InitialisedDatabase(f"postgres://{netloc}/{database}", database, role)
    finally:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            database,
        )
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}"')
        await connection.execute(f'DROP ROLE IF EXISTS "{role}"')
        await connection.close()


@pytest.mark.postgres
async def test_postgres_init_creates_an_unprivileged_role_that_owns_the_schema(
    initialised_database: InitialisedDatabase,
) -> None:
    connection = await asyncpg.connect(initialised_database.app_dsn)
    try:
        await connection.execute("CREATE TABLE memory_k8s_probe (id bigint PRIMARY KEY)")
        await connection.execute("INSERT INTO memory_k8s_probe VALUES (1)")
        assert await connection.fetchval("SELECT count(*) FROM memory_k8s_probe") == 1
        assert await connection.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CREATE ROLE k8s_should_not_exist")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CREATE DATABASE k8s_should_not_exist")
    finally:
        await connection.close()


# ---------------------------------------------------------------- the dev overlay's pods, run for real

# What a pod gets from the cluster that a loopback test must supply itself: its own
# address and folders (ServeProcess assigns them), and the backends' in-cluster hosts.
_PER_PROCESS = {"LOOMFLOW_HOST", "LOOMFLOW_PORT", "LOOMFLOW_DATA_DIR", "LOOMFLOW_SERVICES"}


def _pod_env(env: dict[str, str], database: InitialisedDatabase, redis_url: str) -> dict[str, str]:
    """The manifest's environment for a loopback process: backends swapped, everything else as deployed."""
    local = {k: v for k, v in env.items() if k not in _PER_PROCESS}
    for variable, value in env.items():
        if variable.endswith("_DSN"):
            scheme = urlsplit(value).scheme
            local[variable] = database.app_dsn if BACKEND_OF_SCHEME[scheme] == "postgres" else redis_url
    local["LOOMFLOW_METRICS_PORT"] = str(free_port())
    local["LOOMFLOW_LOG_LEVEL"] = "warning"
    return local


def _readiness_service(container: Obj) -> str:
    return str(container["readinessProbe"]["grpc"].get("service", ""))


async def _probe(address: str, service: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        request = health_pb2.HealthCheckRequest(service=service)
        reply = await health_pb2_grpc.HealthStub(channel).Check(request, timeout=5)
    return int(reply.status)


def _scrape(port: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return int(response.status)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.redis
async def test_dev_overlay_pods_serve_a_turn_and_drain_within_their_grace_period(
    rendered: dict[str, Rendered], initialised_database: InitialisedDatabase, redis_url: str, tmp_path: Path
) -> None:
    dev = rendered["dev"]
    deployments = dev.loomflow_deployments()
    containers = {service: main_container(d) for service, d in deployments.items()}
    envs = {s: _pod_env(dev.env(c), initialised_database, redis_url) for s, c in containers.items()}
    processes = {
        service: ServeProcess(hosted_services(containers[service]), tmp_path / service, env=envs[service])
        for service in deployments
    }
    internal = [s for s in processes if s != "agent"]
    budgets = {s: pod_spec(deployments[s]).get("terminationGracePeriodSeconds", 30) for s in processes}
    try:
        await asyncio.gather(*(asyncio.to_thread(processes[s].start, 90) for s in internal))
        processes["agent"].env = {
            **processes["agent"].env,
            **{f"LOOMFLOW_AGENT_{s.upper()}_ADDRESS": processes[s].address for s in internal},
        }
        await asyncio.to_thread(processes["agent"].start, 90)

        for service, process in processes.items():  # what the kubelet's readiness probe asks
            status = await _probe(process.address, str(containers[service]["readinessProbe"]["grpc"]["service"]))
            assert status == health_pb2.HealthCheckResponse.SERVING, f"{service} is not SERVING"
            assert await asyncio.to_thread(_scrape, envs[service]["LOOMFLOW_METRICS_PORT"]) == 200, service

        agent_env = envs["agent"]
        # docs/deploy.md: `kubectl exec deploy/agent -- loomflow token alice`, with the Agent pod's environment.
        minted = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "loomflow.cli", "token", "alice"],
            env={**source_env(), **agent_env},
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert minted.returncode == 0, minted.stderr
        user_token = minted.stdout.strip()
        scope = tenancy_pb2.UserScope(user_id="alice")
        async with grpc.aio.insecure_channel(processes["agent"].address) as channel:
            reply = await agent_pb2_grpc.AgentServiceStub(channel).Run(
                agent_pb2.RunRequest(scope=scope, options=agent_pb2.RunOptions(prompt="hello from k8s")),
                metadata=(("authorization", f"Bearer {user_token}"),),
                timeout=30,
            )
        assert reply.run_id, "the Agent answered without a run id"
        service_token = agent_env["LOOMFLOW_AUTH_SERVICE_TOKEN"]
        async with grpc.aio.insecure_channel(processes["audit"].address) as channel:
            found = await audit_pb2_grpc.AuditServiceStub(channel).Query(
                audit_pb2.QueryRequest(scope=scope, run_id=reply.run_id),
                metadata=(("authorization", f"Bearer {service_token}"),),
                timeout=10,
            )
        assert found.entries, "the run left no audit entry in the Postgres the init script prepared"
    finally:

        def stop(service: str) -> tuple[str, int, float]:
            started = time.monotonic()
            code = processes[service].stop(timeout=budgets[service] + 10)
            return service, code, time.monotonic() - started

        running = [s for s, p in processes.items() if p.process is not None]
        stopped = await asyncio.gather(*(asyncio.to_thread(stop, s) for s in running))
    for service, code, seconds in stopped:
        assert code == 0, f"{service} exited with {code} after SIGTERM: {processes[service].log_tail()}"
        limit = budgets[service]
        assert seconds < limit, f"{service} took {seconds:.1f}s to drain; the kubelet sends SIGKILL at {limit}s"
