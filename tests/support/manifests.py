"""Renders the k8s/ kustomizations offline and answers questions about the result.

`kubectl kustomize` does the rendering (as `kubectl apply -k` would); everything
else reads the rendered objects: a container's environment with its ConfigMap
and Secret references resolved, which Service selects which pods, and whether a
set of NetworkPolicies lets one pod reach another on a port.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "k8s"
PROD_SECRETS_SCRIPT = Path("overlays") / "prod" / "secrets" / "generate.sh"

Obj = dict[str, Any]


def require_tool(name: str) -> str:
    """The path of a command-line tool; skips loudly without it, fails under CI."""
    path = shutil.which(name)
    if path:
        return path
    message = f"{name} is not installed; the k8s manifest checks need it"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def kustomize(directory: Path) -> str:
    """The YAML `kubectl kustomize <directory>` renders (what `kubectl apply -k` would send)."""
    kubectl = require_tool("kubectl")
    done = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise AssertionError(f"kubectl kustomize {directory} failed:\n{done.stderr}")
    return done.stdout


# The managed databases an operator hands generate.sh (prod runs no databases in the cluster).
PROD_DATABASES = {
    "POSTGRES_DSN": "postgres://loomflow_app:app-secret@db.example.internal:5432/loomflow",
    "POSTGRES_OWNER_DSN": "postgres://loomflow_owner:owner-secret@db.example.internal:5432/loomflow",
    "REDIS_URL": "rediss://:redis-secret@cache.example.internal:6379/0",
}


def copy_with_prod_secrets(destination: Path) -> Path:
    """A copy of k8s/ whose prod secrets were made by the documented generate.sh; returns it."""
    require_tool("openssl")
    copy = destination / "k8s"
    shutil.copytree(K8S, copy)
    for generated in (copy / PROD_SECRETS_SCRIPT).parent.glob("*.env"):
        generated.unlink()  # a developer's own prod secrets never take part in a test
    env = {**os.environ, **PROD_DATABASES}
    subprocess.run(["bash", str(copy / PROD_SECRETS_SCRIPT)], env=env, check=True, capture_output=True, timeout=60)
    return copy


def read_env_file(path: Path) -> dict[str, str]:
    """A kustomize `envs:` file: KEY=VALUE lines, # comments and blank lines ignored."""
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value
    return values


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Kubernetes label-selector semantics (matchLabels AND every matchExpression)."""
    if selector is None:
        return False
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


@dataclass(frozen=True)
class Peer:
    """A network client: a pod (its namespace and labels) or, with namespace None, outside the cluster."""

    namespace: str | None
    labels: Mapping[str, str] = field(default_factory=dict)
    namespace_labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class Rendered:
    """The objects of one rendered kustomization."""

    text: str
    objects: list[Obj] = field(init=False)

    def __post_init__(self) -> None:
        self.objects = [o for o in yaml.safe_load_all(self.text) if o]

    def of_kind(self, kind: str) -> list[Obj]:
        return [o for o in self.objects if o["kind"] == kind]

    def find(self, kind: str, name: str) -> Obj | None:
        return next((o for o in self.of_kind(kind) if o["metadata"]["name"] == name), None)

    def get(self, kind: str, name: str) -> Obj:
        found = self.find(kind, name)
        assert found is not None, f"no {kind} named {name!r} in the rendered manifests"
        return found

    def data(self, kind: str, name: str) -> dict[str, str]:
        """A ConfigMap's or Secret's values (Secret data base64-decoded)."""
        obj = self.get(kind, name)
        if kind == "Secret":
            decoded = {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
            return decoded | dict(obj.get("stringData") or {})
        return dict(obj.get("data") or {})

    def workloads(self) -> list[Obj]:
        return self.of_kind("Deployment") + self.of_kind("StatefulSet")

    def pod_templates(self) -> list[Obj]:
        """Everything that runs pods: the long-running workloads and the Jobs (loomflow migrate)."""
        return self.workloads() + self.of_kind("Job")

    def loomflow_deployments(self) -> dict[str, Obj]:
        """The Deployments that run a loomflow service, keyed by the service they host."""
        found: dict[str, Obj] = {}
        for deployment in self.of_kind("Deployment"):
            container = main_container(deployment)
            if image_name(container) == "loomflow":
                found[hosted_services(container)] = deployment
        return found

    def containers(self) -> Iterator[tuple[Obj, Obj]]:
        """(workload, container) for every container and init container."""
        for workload in self.workloads():
            spec = pod_spec(workload)
            for container in spec.get("initContainers", []) + spec["containers"]:
                yield workload, container

    def env(self, container: Obj) -> dict[str, str]:
        """The container's environment as the kubelet builds it: envFrom first, then env."""
        values: dict[str, str] = {}
        for source in container.get("envFrom", []):
            prefix = source.get("prefix", "")
            if "configMapRef" in source:
                items = self.data("ConfigMap", source["configMapRef"]["name"])
            else:
                items = self.data("Secret", source["secretRef"]["name"])
            values.update({prefix + k: v for k, v in items.items()})
        for variable in container.get("env", []):
            if "value" in variable:
                values[variable["name"]] = variable["value"]
                continue
            ref = variable["valueFrom"]
            if "secretKeyRef" in ref:
                values[variable["name"]] = self.data("Secret", ref["secretKeyRef"]["name"])[ref["secretKeyRef"]["key"]]
            elif "configMapKeyRef" in ref:
                values[variable["name"]] = self.data("ConfigMap", ref["configMapKeyRef"]["name"])[
                    ref["configMapKeyRef"]["key"]
                ]
        return values

    def dangling_references(self) -> list[str]:
        """Every ConfigMap/Secret (and key) a workload names that the rendering lacks."""
        problems: list[str] = []

        # cert-manager writes these Secrets (tls.crt, tls.key, ca.crt) from the Certificates rendered here.
        issued = {c["spec"]["secretName"] for c in self.of_kind("Certificate")}

        def check(kind: str, name: str, key: str | None, where: str) -> None:
            if kind == "Secret" and name in issued:
                if key is not None and key not in ("tls.crt", "tls.key", "ca.crt"):
                    problems.append(f"{where}: Secret {name!r} (a Certificate's) has no key {key!r}")
                return
            obj = self.find(kind, name)
            if obj is None:
                problems.append(f"{where}: {kind} {name!r} does not exist")
                return
            keys = set(obj.get("data") or {}) | set(obj.get("stringData") or {})
            if key is not None and key not in keys:
                problems.append(f"{where}: {kind} {name!r} has no key {key!r}")

        for workload in self.workloads():
            spec = pod_spec(workload)
            where = f"{workload['kind']}/{workload['metadata']['name']}"
            for container in spec.get("initContainers", []) + spec["containers"]:
                for source in container.get("envFrom", []):
                    if "configMapRef" in source:
                        check("ConfigMap", source["configMapRef"]["name"], None, where)
                    if "secretRef" in source:
                        check("Secret", source["secretRef"]["name"], None, where)
                for variable in container.get("env", []):
                    ref = variable.get("valueFrom", {})
                    if "secretKeyRef" in ref:
                        check("Secret", ref["secretKeyRef"]["name"], ref["secretKeyRef"]["key"], where)
                    if "configMapKeyRef" in ref:
                        check("ConfigMap", ref["configMapKeyRef"]["name"], ref["configMapKeyRef"]["key"], where)
            for volume in spec.get("volumes", []):
                if "configMap" in volume:
                    check("ConfigMap", volume["configMap"]["name"], None, where)
                if "secret" in volume:
                    check("Secret", volume["secret"]["secretName"], None, where)
            account = spec.get("serviceAccountName")
            if account and self.find("ServiceAccount", account) is None:
                problems.append(f"{where}: ServiceAccount {account!r} does not exist")
        return problems

    def pods_selected_by(self, service: Obj) -> list[Obj]:
        """The workloads whose pods a Service selects."""
        selector = {"matchLabels": service["spec"].get("selector") or {}}
        return [w for w in self.workloads() if selector_matches(selector, pod_labels(w))]

    def namespace_of(self, obj: Obj) -> str:
        return str(obj["metadata"].get("namespace", "default"))

    def may_connect(self, source: Peer, target: Obj, port: int) -> bool:
        """Whether the NetworkPolicies let ``source`` open a TCP connection to ``target``'s pods on ``port``."""
        namespace = self.namespace_of(target)
        labels = pod_labels(target)
        policies = [
            p
            for p in self.of_kind("NetworkPolicy")
            if self.namespace_of(p) == namespace
            and "Ingress" in p["spec"].get("policyTypes", ["Ingress"])
            and selector_matches(p["spec"]["podSelector"], labels)
        ]
        if not policies:
            return True  # not isolated
        for policy in policies:
            for rule in policy["spec"].get("ingress", []):
                ports = rule.get("ports")
                if ports and not any(int(p["port"]) == port and p.get("protocol", "TCP") == "TCP" for p in ports):
                    continue
                peers = rule.get("from")
                if not peers or any(_peer_matches(peer, source, namespace) for peer in peers):
                    return True
        return False


def _peer_matches(peer: Mapping[str, Any], source: Peer, policy_namespace: str) -> bool:
    if "ipBlock" in peer:
        raise NotImplementedError("ipBlock peers are not modelled by this check")
    if source.namespace is None:
        return False  # pod and namespace selectors only ever match pods in the cluster
    if "namespaceSelector" in peer:
        in_namespace = selector_matches(peer["namespaceSelector"], source.namespace_labels)
    else:
        in_namespace = source.namespace == policy_namespace
    pod_ok = selector_matches(peer["podSelector"], source.labels) if "podSelector" in peer else True
    return in_namespace and pod_ok


def pod_spec(workload: Obj) -> Obj:
    spec: Obj = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"].get("labels") or {})


def main_container(workload: Obj) -> Obj:
    containers: list[Obj] = pod_spec(workload)["containers"]
    assert len(containers) == 1, f"{workload['metadata']['name']}: expected one container, found {len(containers)}"
    return containers[0]


def image_name(container: Obj) -> str:
    """The image's repository name without registry or tag: ``loomflow`` for ``ghcr.io/x/loomflow:1``."""
    image = str(container["image"]).split("@")[0]
    last = image.rsplit("/", 1)[-1]
    return last.split(":")[0]


def hosted_services(container: Obj) -> str:
    """The value of ``--services`` in a loomflow container's args (its ENTRYPOINT is ``loomflow serve``)."""
    args = [str(a) for a in container.get("args", [])]
    for i, arg in enumerate(args):
        if arg == "--services" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--services="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"container {container['name']} does not pass --services: {args}")


def named_port(container: Obj, name: str) -> int:
    for port in container.get("ports", []):
        if port.get("name") == name:
            return int(port["containerPort"])
    raise AssertionError(f"container {container['name']} has no port named {name!r}")


def service_target_port(service: Obj, port: int, workload: Obj) -> int:
    """The container port a Service's ``port`` reaches on ``workload``'s pods."""
    for entry in service["spec"]["ports"]:
        if int(entry["port"]) == port:
            target = entry.get("targetPort", entry["port"])
            if isinstance(target, int):
                return target
            return named_port(main_container(workload), str(target))
    raise AssertionError(f"Service {service['metadata']['name']} exposes no port {port}")
