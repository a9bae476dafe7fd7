#!/usr/bin/env python3
"""Checks the orgtrail Helm chart without a cluster, and renders it for the tests.

    check.py [check]                 lint and render the chart with its default values and with
                                     each ci/*-values.yaml, validate every rendered manifest with
                                     `kubernetes-validate --strict` (Kubernetes 1.28 and 1.37), and
                                     check what the schemas cannot (below); exit 1 naming every
                                     problem
    check.py render --out DIR [--values FILE]... [--name N] [--namespace NS]
                                     render: DIR/manifests.yaml, and each ConfigMap's entries as
                                     DIR/configmaps/NAME/KEY
    check.py podman --out FILE [--values FILE]... [--name N] [--collector-only]
                                     render, then keep what `podman kube play` (4.3) runs: the
                                     ConfigMaps, the PersistentVolumeClaims, the agent Deployments,
                                     and the collector StatefulSet as a Pod named like its Service
                                     (podman names a Deployment's pod NAME-pod-0, and pods find each
                                     other by pod name), its volumeClaimTemplates as claims;
                                     annotation values cut to podman's 63 characters; container
                                     ports left out (podman would publish each on the host).
                                     Prints the kinds left out on standard error.

Needs the PyPI packages helm-python-sdk (module helm_python: Helm's SDK, no helm binary) and
kubernetes-validate, and PyYAML; scripts/test-deps installs them. A missing one is an error,
never a skip.

kubernetes-validate has no schema for custom resources: for the ServiceMonitor
(monitoring.coreos.com/v1) it prints "WARN ... Couldn't find schema" and passes. This script
counts that as unvalidated, not passed: it accepts the warning for that kind only, and checks
the ServiceMonitor itself (its selector picks the chart's metrics Services, its endpoint names
their `ops` port). Any other warning is an error.

Beyond the schemas, every rendered pod must run as uid 65532, non-root, with a read-only root
filesystem, no privilege escalation, all capabilities dropped, seccomp RuntimeDefault, resources
set, and liveness and readiness probes on the ops port's /healthz and /readyz; each Service must
select pods that have the ports it targets; the agents' NetworkPolicy must let them out only to
the collector's gRPC port and DNS (port 53), and the collector's let gRPC in from the agents and
the ops port in from monitoring only; no Secret may be rendered (keys never come from values);
there is one agent Deployment per listed account; and bad values (malformed or unquoted
accounts, an account twice, an agent without sources, ...) are refused with their reason.
"""

from __future__ import annotations

import argparse
import copy
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CHART = os.path.join(HERE, "orgtrail")
K8S_VERSIONS = ["1.28.0", "1.37.0"]
# Kinds kubernetes-validate has no schema for; checked by check_service_monitor instead.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}
UID = 65532


def die(msg: str) -> None:
    print(f"check.py: {msg}", file=sys.stderr)
    sys.exit(2)


try:
    import yaml
except ImportError:
    die("PyYAML is missing: run scripts/test-deps (or pip install pyyaml)")
try:
    import helm_python
except ImportError:
    die("helm_python is missing: run scripts/test-deps (or pip install helm-python-sdk)")


def load_values(files: list[str]) -> dict:
    """The values files merged in order (later keys win, maps merge), like helm -f."""

    def merge(base: dict, over: dict) -> dict:
        out = dict(base)
        for k, v in over.items():
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = merge(out[k], v)
            else:
                out[k] = v
        return out

    values: dict = {}
    for f in files:
        with open(f) as fh:
            values = merge(values, yaml.safe_load(fh) or {})
    return values


def render(values: dict, name: str, namespace: str) -> list[dict]:
    """Every rendered resource, in template order (NOTES.txt left out)."""
    chart = helm_python.Chart.load(CHART)
    try:
        chart.validate_schema(values)
        manifests = chart.render(values, name=name, namespace=namespace, is_install=True)
    finally:
        chart.close()
    docs = []
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(manifests[path]):
            if doc:
                docs.append(doc)
    return docs


def pods_of(docs: list[dict]) -> list[tuple[dict, dict]]:
    """(workload, pod template) of every Deployment and StatefulSet."""
    return [
        (d, d["spec"]["template"])
        for d in docs
        if d["kind"] in ("Deployment", "StatefulSet")
    ]


def check_pods(docs: list[dict], values: dict, problems: list[str]) -> None:
    for w, tpl in pods_of(docs):
        where = f"{w['kind']}/{w['metadata']['name']}"
        spec = tpl["spec"]
        psc = spec.get("securityContext", {})
        if spec.get("automountServiceAccountToken") is not False:
            problems.append(f"{where}: automountServiceAccountToken is not false")
        for c in spec["containers"]:
            sc = {**psc, **c.get("securityContext", {})}
            w_c = f"{where} container {c['name']}"
            want = {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
            }
            for k, v in want.items():
                if sc.get(k) != v:
                    problems.append(f"{w_c}: securityContext.{k} is {sc.get(k)!r}, want {v!r}")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                problems.append(f"{w_c}: capabilities.drop is not [ALL]")
            if sc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
                problems.append(f"{w_c}: seccompProfile is not RuntimeDefault")
            res = c.get("resources", {})
            if not res.get("requests") or not res.get("limits", {}).get("memory"):
                problems.append(f"{w_c}: resources need requests and a memory limit")
            ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                get = c.get(probe, {}).get("httpGet", {})
                if get.get("path") != path or get.get("port") != "ops" or "ops" not in ports:
                    problems.append(f"{w_c}: {probe} is not GET {path} on the ops port")
        # Every mounted volume is declared, every declared volume mounted.
        declared = {v["name"] for v in spec.get("volumes", [])}
        declared |= {t["metadata"]["name"] for t in w["spec"].get("volumeClaimTemplates", [])}
        mounted = {m["name"] for c in spec["containers"] for m in c.get("volumeMounts", [])}
        if declared != mounted:
            problems.append(f"{where}: volumes declared {sorted(declared)} but mounted {sorted(mounted)}")
    if any(d["kind"] == "Secret" for d in docs):
        problems.append("a Secret is rendered: certificates and keys come from existing Secrets only")
    accounts = [a["account"] for a in values.get("agents", [])]
    agents = [
        d for d in docs
        if d["kind"] == "Deployment"
        and d["metadata"]["labels"].get("app.kubernetes.io/component") == "agent"
    ]
    got = sorted(d["metadata"]["labels"]["orgtrail.io/account"] for d in agents)
    if got != sorted(accounts):
        problems.append(f"agent Deployments for {got}, want one per account {sorted(accounts)}")
    if sum(d["kind"] == "StatefulSet" for d in docs) != 1:
        problems.append("want exactly one StatefulSet (the collector)")


def selects(selector: dict, labels: dict) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


def check_services(docs: list[dict], problems: list[str]) -> None:
    pods = pods_of(docs)
    for s in (d for d in docs if d["kind"] == "Service"):
        name = s["metadata"]["name"]
        matched = [tpl for _, tpl in pods if selects(s["spec"]["selector"], tpl["metadata"]["labels"])]
        if not matched:
            problems.append(f"Service/{name} selects no pod")
        for p in s["spec"]["ports"]:
            for tpl in matched:
                names = {cp["name"] for c in tpl["spec"]["containers"] for cp in c.get("ports", [])}
                if p["targetPort"] not in names:
                    problems.append(f"Service/{name}: port {p['name']} targets {p['targetPort']}, which a selected pod lacks")
    sts = [d for d in docs if d["kind"] == "StatefulSet"]
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for d in sts:
        if d["spec"]["serviceName"] not in services:
            problems.append(f"StatefulSet/{d['metadata']['name']}: serviceName {d['spec']['serviceName']} is not rendered")


def check_network_policies(docs: list[dict], problems: list[str]) -> None:
    pols = {d["metadata"]["labels"]["app.kubernetes.io/component"]: d
            for d in docs if d["kind"] == "NetworkPolicy"}
    if set(pols) != {"collector", "agent"}:
        problems.append(f"want a NetworkPolicy for the collector and one for the agents, got {sorted(pols)}")
        return
    collector = next(tpl for w, tpl in pods_of(docs) if w["kind"] == "StatefulSet")
    clabels = collector["metadata"]["labels"]
    grpc = next(p["containerPort"] for c in collector["spec"]["containers"]
                for p in c["ports"] if p["name"] == "grpc")
    a = pols["agent"]["spec"]
    if "Egress" not in a.get("policyTypes", []):
        problems.append("agents' NetworkPolicy does not restrict egress")
    for rule in a.get("egress", []):
        ports = {(p["port"], p.get("protocol", "TCP")) for p in rule.get("ports", [])}
        to_collector = all("podSelector" in t and "namespaceSelector" not in t
                           and selects(t["podSelector"]["matchLabels"], clabels)
                           for t in rule.get("to", [])) and rule.get("to")
        if to_collector and ports == {(grpc, "TCP")}:
            continue
        if ports and {p for p, _ in ports} == {53}:
            continue
        problems.append(f"agents' NetworkPolicy lets them out beyond the collector and DNS: {rule}")
    c = pols["collector"]["spec"]
    if "Ingress" not in c.get("policyTypes", []):
        problems.append("collector's NetworkPolicy does not restrict ingress")
    agents = [tpl["metadata"]["labels"] for w, tpl in pods_of(docs) if w["kind"] == "Deployment"]
    for rule in c.get("ingress", []):
        ports = {p["port"] for p in rule.get("ports", [])}
        if ports not in ({"grpc"}, {"ops"}):
            problems.append(f"collector's NetworkPolicy opens ports other than grpc or ops: {rule}")
        if not rule.get("from"):
            problems.append(f"collector's NetworkPolicy admits everyone on {ports}")
        if ports == {"grpc"}:
            for labels in agents:
                if not any("podSelector" in f and "namespaceSelector" not in f
                           and selects(f["podSelector"]["matchLabels"], labels)
                           for f in rule["from"]):
                    problems.append("collector's NetworkPolicy does not admit the agents on grpc")


def check_service_monitor(sm: dict, docs: list[dict], problems: list[str]) -> None:
    where = f"ServiceMonitor/{sm['metadata']['name']}"
    spec = sm.get("spec", {})
    sel = spec.get("selector", {}).get("matchLabels", {})
    services = [d for d in docs if d["kind"] == "Service" and selects(sel, d["metadata"].get("labels", {}))]
    if not services:
        problems.append(f"{where}: its selector picks no rendered Service")
    endpoints = spec.get("endpoints", [])
    if not endpoints:
        problems.append(f"{where}: no endpoints")
    for e in endpoints:
        if set(e) - {"port", "path", "scheme", "interval", "scrapeTimeout"}:
            problems.append(f"{where}: unexpected endpoint keys {sorted(set(e))}")
        if e.get("path") != "/metrics":
            problems.append(f"{where}: endpoint path {e.get('path')!r}, want /metrics")
        for s in services:
            if e.get("port") not in {p["name"] for p in s["spec"]["ports"]}:
                problems.append(f"{where}: Service/{s['metadata']['name']} has no port named {e.get('port')!r}")
    for k in ("interval", "scrapeTimeout"):
        for e in endpoints:
            if not re.fullmatch(r"[0-9]+(ms|s|m|h)", str(e.get(k, ""))):
                problems.append(f"{where}: {k} {e.get(k)!r} is not a Prometheus duration")


def kubernetes_validate(docs: list[dict], problems: list[str]) -> tuple[int, int]:
    """Runs kubernetes-validate --strict on every resource, one file each. Returns (validated
    resources, resources of kinds without a schema)."""
    exe = shutil.which("kubernetes-validate")
    if exe is None:
        die("kubernetes-validate is missing: run scripts/test-deps (or pip install kubernetes-validate)")
    unvalidated = 0
    with tempfile.TemporaryDirectory(prefix="orgtrail-helm-") as tmp:
        files = {}
        for i, d in enumerate(docs):
            f = os.path.join(tmp, f"{i:02}-{d['kind'].lower()}-{d['metadata']['name']}.yaml")
            with open(f, "w") as fh:
                yaml.safe_dump(d, fh)
            files[f] = d
        args = [exe, "--strict"]
        for v in K8S_VERSIONS:
            args += ["-k", v]
        out = subprocess.run(args + list(files), capture_output=True, text=True)
        lines = out.stdout.splitlines()
        for f, d in files.items():
            mine = [l for l in lines if f in l]
            crd = (d["apiVersion"], d["kind"]) in CRD_KINDS
            passed = [l for l in mine if l.startswith("INFO ") and " passed " in l]
            warned = [l for l in mine if l.startswith("WARN ")]
            failed = [l for l in mine if not (l.startswith("INFO ") or l.startswith("WARN "))]
            kn = f"{d['kind']}/{d['metadata']['name']}"
            if failed:
                problems.extend(l.replace(f, kn) for l in failed)
            elif crd:
                if len(warned) != len(K8S_VERSIONS) or "Couldn't find schema" not in warned[0]:
                    problems.append(f"{kn}: expected kubernetes-validate to have no schema for it: {mine}")
                unvalidated += 1
            elif warned or len(passed) != len(K8S_VERSIONS):
                problems.append(f"{kn}: not validated against {K8S_VERSIONS}: {mine}")
        if out.returncode != 0 and not any(p for p in problems):
            problems.append(f"kubernetes-validate exited {out.returncode}: {out.stdout}{out.stderr}")
    return len(docs) - unvalidated, unvalidated


def lint(values_files: list[str], problems: list[str]) -> None:
    report = helm_python.lint(CHART, load_values(values_files), strict=True)
    for m in report.get("messages", []):
        # Severity 1 is info ("icon is recommended"); warnings and errors fail.
        if m.get("severity", 0) >= 2:
            problems.append(f"lint {values_files or 'defaults'}: {m.get('path')}: {m.get('error')}")
    for e in report.get("errors", []):
        problems.append(f"lint {values_files or 'defaults'}: {e}")


# Values the chart must refuse to render, each with (part of) the message that says why.
REFUSALS = [
    ({"agents": [{"account": 111122223333, "sources": [{"type": "jsonl", "path": "-"}]}]},
     "must be quoted"),
    ({"agents": [{"account": "11112222333", "sources": [{"type": "jsonl", "path": "-"}]}]},
     "is not 12 digits"),
    ({"agents": [{"account": "111122223333", "sources": [{"type": "jsonl", "path": "-"}]},
                 {"account": "111122223333", "sources": [{"type": "jsonl", "path": "-"}]}]},
     "is listed twice"),
    ({"agents": [{"account": "111122223333"}]}, "give at least one entry in `sources`"),
    ({"agents": [{"account": "111122223333",
                  "sources": [{"type": "jsonl", "path": "-", "nested": {"a": 1}}]}]},
     "a nested table is not supported"),
    ({"agents": [{"account": "111122223333", "spool": {"type": "hostPath"},
                  "sources": [{"type": "jsonl", "path": "-"}]}]},
     "give emptyDir or persistentVolumeClaim"),
    ({"organization": {"allowAnyAccount": False}}, "the collector would admit nobody"),
    ({"organization": {"accounts": ["1234"]}}, "is not a quoted string of 12 digits"),
]


def check_refusals(problems: list[str]) -> int:
    for values, want in REFUSALS:
        try:
            render(values, "orgtrail", "orgtrail")
        except helm_python.HelmError as e:
            if want not in str(e):
                problems.append(f"values {values} refused, but not with {want!r}: {e}")
            continue
        problems.append(f"values {values} rendered; want a refusal with {want!r}")
    return len(REFUSALS)


def cmd_check(_args) -> int:
    problems: list[str] = []
    refused = check_refusals(problems)
    print(f"{refused} kinds of bad values refused with their reason: {'ok' if not problems else 'FAILED'}")
    cases = [[]] + [[f] for f in sorted(glob.glob(os.path.join(CHART, "ci", "*-values.yaml")))]
    total = unvalidated = 0
    for files in cases:
        label = os.path.basename(files[0]) if files else "default values"
        before = len(problems)
        lint(files, problems)
        values = load_values(files)
        docs = render(values, "orgtrail", "orgtrail")
        kinds = sorted({d["kind"] for d in docs})
        check_pods(docs, values, problems)
        check_services(docs, problems)
        check_network_policies(docs, problems)
        for sm in (d for d in docs if d["kind"] == "ServiceMonitor"):
            check_service_monitor(sm, docs, problems)
        if values.get("serviceMonitor", {}).get("enabled") and "ServiceMonitor" not in kinds:
            problems.append(f"{label}: serviceMonitor.enabled but no ServiceMonitor rendered")
        ok, skipped = kubernetes_validate(docs, problems)
        total += ok
        unvalidated += skipped
        status = "ok" if len(problems) == before else "FAILED"
        print(f"{label}: {len(docs)} resources ({', '.join(kinds)}); lint, kubernetes-validate --strict "
              f"({ok} validated against {', '.join(K8S_VERSIONS)}; {skipped} without a schema, checked here): {status}")
    for p in problems:
        print(f"PROBLEM {p}")
    if problems:
        print(f"check.py: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check.py: chart ok: {total} resources validated, {unvalidated} ServiceMonitor(s) checked structurally")
    return 0


def cmd_render(args) -> int:
    docs = render(load_values(args.values), args.name, args.namespace)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "manifests.yaml"), "w") as fh:
        yaml.safe_dump_all(docs, fh)
    for d in docs:
        if d["kind"] == "ConfigMap":
            cm = os.path.join(args.out, "configmaps", d["metadata"]["name"])
            os.makedirs(cm, exist_ok=True)
            for k, v in d.get("data", {}).items():
                with open(os.path.join(cm, k), "w") as fh:
                    fh.write(v)
    return 0


def podman_annotations(doc: dict) -> None:
    """podman 4.3 refuses annotation values over 63 characters (Kubernetes allows 256 KiB in
    all): the checksum/config annotations are cut to 63 (a hash prefix still tells configs
    apart)."""
    for meta in (doc.get("metadata", {}), doc.get("spec", {}).get("template", {}).get("metadata", {})):
        ann = meta.get("annotations") or {}
        for k, v in ann.items():
            if len(str(v)) > 63:
                ann[k] = str(v)[:63]


def podman_ports(doc: dict) -> None:
    """podman 4.3 publishes every containerPort on the host, at the same port number, which
    would make tests collide with each other and with the host: the ports are left out (pods
    are reached at their own addresses on the podman network), and probes name the port by
    number instead of by name."""
    spec = doc.get("spec", {})
    spec = spec.get("template", {}).get("spec", spec)
    for c in spec.get("containers", []):
        named = {p["name"]: p["containerPort"] for p in c.pop("ports", [])}
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            get = c.get(probe, {}).get("httpGet")
            if get and get.get("port") in named:
                get["port"] = named[get["port"]]


def to_podman(docs: list[dict]) -> tuple[list[dict], list[str]]:
    """What podman kube play 4.3 runs, and the kinds left out."""
    out, left = [], []
    docs = copy.deepcopy(docs)
    for d in docs:
        podman_annotations(d)
        podman_ports(d)
    services = {d["metadata"]["name"] for d in docs if d["kind"] == "Service"}
    for d in docs:
        kind = d["kind"]
        if kind in ("ConfigMap", "PersistentVolumeClaim", "Deployment"):
            out.append(d)
        elif kind == "StatefulSet":
            name = d["metadata"]["name"]
            if name not in services:
                die(f"StatefulSet/{name}: no Service of the same name to stand in for")
            tpl = copy.deepcopy(d["spec"]["template"])
            for t in d["spec"].get("volumeClaimTemplates", []):
                claim = f"{t['metadata']['name']}-{name}-0"  # Kubernetes' claim name
                out.append({
                    "apiVersion": "v1",
                    "kind": "PersistentVolumeClaim",
                    "metadata": {"name": claim, "labels": t["metadata"].get("labels", {})},
                    "spec": t["spec"],
                })
                tpl["spec"].setdefault("volumes", []).append(
                    {"name": t["metadata"]["name"], "persistentVolumeClaim": {"claimName": claim}})
            out.append({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {**tpl["metadata"], "name": name},
                "spec": tpl["spec"],
            })
        else:
            left.append(f"{kind}/{d['metadata']['name']}")
    return out, left


def cmd_podman(args) -> int:
    docs = render(load_values(args.values), args.name, args.namespace)
    out, left = to_podman(docs)
    if args.collector_only:
        # For a second play after `kube down`: the collector's Pod and ConfigMap alone, without
        # its claim, whose volume is there already (podman refuses to create it again), as a
        # StatefulSet's claims outlive its pods.
        out = [d for d in out
               if d["kind"] in ("Pod", "ConfigMap")
               and d["metadata"]["labels"].get("app.kubernetes.io/component") == "collector"]
    with open(args.out, "w") as fh:
        yaml.safe_dump_all(out, fh)
    print("left out (podman kube play 4.3 does not run these kinds): " + ", ".join(left), file=sys.stderr)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd")
    sub.add_parser("check")
    for name in ("render", "podman"):
        s = sub.add_parser(name)
        s.add_argument("--out", required=True)
        s.add_argument("--values", action="append", default=[])
        s.add_argument("--name", default="orgtrail")
        s.add_argument("--namespace", default="orgtrail")
        if name == "podman":
            s.add_argument("--collector-only", action="store_true",
                           help="the collector's Pod and ConfigMap only (its claim's volume exists)")
    args = p.parse_args()
    try:
        if args.cmd == "render":
            return cmd_render(args)
        if args.cmd == "podman":
            return cmd_podman(args)
        return cmd_check(args)
    except helm_python.HelmError as e:
        print(f"check.py: helm: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
