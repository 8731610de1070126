"""Checks of the deployable artefacts that no generic linter makes, run by deploy/checks/run
with the deploy-tools venv's python (PyYAML):

  chart FILE [--no-hpa] [--no-pdb]   a `helm template` output holds what the chart promises
  compose FILE                       a `docker-compose config --format json` output holds the
                                     stack's promises
  settings AIMC_BIN COMPOSE_JSON CHART_FILE...
                                     every AIMC_* variable the compose stack and the rendered
                                     charts set is a setting of that aimc binary, and
                                     `aimc config show` accepts their values

Each prints a line per thing checked and exits 1 on the first list of failures.
"""

import json
import os
import re
import subprocess
import sys
import tempfile

import yaml

# AIMC_* variables that are no settings but which aimc reads (configuration.rs, NOT_SETTINGS).
TOOL_VARIABLES = {"config_file"}

PLACEHOLDERS = {
    "AIMC_DATABASE_URL": "postgres://aimc:placeholder@postgres:5432/aimc",
    "AIMC_VAULT_TOKEN": "s.placeholder-token",
    "AIMC_JWT_HS256_SECRET": "placeholder-secret-of-at-least-32-bytes-long",
}

failures = []


def check(condition, message):
    if condition:
        print(f"  ok: {message}")
    else:
        print(f"  FAILED: {message}")
        failures.append(message)


def finish():
    if failures:
        print(f"{len(failures)} check(s) failed", file=sys.stderr)
        sys.exit(1)


def documents(path):
    with open(path) as source:
        return [doc for doc in yaml.safe_load_all(source) if doc]


def one(docs, kind):
    found = [doc for doc in docs if doc.get("kind") == kind]
    return found[0] if len(found) == 1 else None


def hardened(context, pod_context, what):
    merged = dict(pod_context or {})
    merged.update(context or {})
    check(merged.get("runAsNonRoot") is True, f"{what}: runAsNonRoot")
    check(merged.get("runAsUser") == 10001, f"{what}: runAsUser 10001")
    check(merged.get("readOnlyRootFilesystem") is True, f"{what}: readOnlyRootFilesystem")
    check(merged.get("allowPrivilegeEscalation") is False, f"{what}: allowPrivilegeEscalation false")
    check((merged.get("capabilities") or {}).get("drop") == ["ALL"], f"{what}: drops ALL capabilities")
    check((merged.get("seccompProfile") or {}).get("type") == "RuntimeDefault", f"{what}: seccomp RuntimeDefault")


def chart(path, hpa=True, pdb=True):
    docs = documents(path)
    print(f"chart policy: {path}")
    deployment = one(docs, "Deployment")
    check(deployment is not None, "one Deployment")
    if deployment is None:
        return
    pod = deployment["spec"]["template"]["spec"]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    container = next(c for c in pod["containers"] if c["name"] == "aimc")
    check(container.get("args") == ["serve"], "the replicas run `aimc serve`")
    check(container["readinessProbe"]["httpGet"]["path"] == "/readyz", "readinessProbe GET /readyz")
    check(container["livenessProbe"]["httpGet"]["path"] == "/healthz", "livenessProbe GET /healthz")
    check({"cpu", "memory"} <= set(container["resources"].get("requests", {})), "resource requests")
    check("memory" in container["resources"].get("limits", {}), "a memory limit")
    hardened(container.get("securityContext"), pod.get("securityContext"), "replica")
    names = [e["name"] for e in container.get("env", [])]
    check(len(names) == len(set(names)), "no variable set twice")
    secret_refs = [e for e in container.get("env", []) if "valueFrom" in e]
    check(all("secretKeyRef" in e["valueFrom"] for e in secret_refs), "secrets come from Secret references")
    check(not any(re.search("SECRET|TOKEN|DATABASE_URL|ROLE_ID", e["name"]) and "value" in e
                  for e in container.get("env", [])), "no secret as a literal value")

    service = one(docs, "Service")
    check(service is not None, "one Service")
    if service:
        selector = service["spec"]["selector"]
        check(all(pod_labels.get(k) == v for k, v in selector.items()), "the Service selects the replicas")

    job = one(docs, "Job")
    check(job is not None, "a migration Job")
    if job:
        hooks = set(job["metadata"]["annotations"]["helm.sh/hook"].split(","))
        check({"pre-install", "pre-upgrade"} <= hooks, "the Job is a pre-install,pre-upgrade hook")
        job_pod = job["spec"]["template"]["spec"]
        job_container = job_pod["containers"][0]
        check(job_container.get("args") == ["migrate"], "the Job runs `aimc migrate`")
        hardened(job_container.get("securityContext"), job_pod.get("securityContext"), "migration Job")
        job_labels = job["spec"]["template"]["metadata"]["labels"]
        if service:
            check(not all(job_labels.get(k) == v for k, v in service["spec"]["selector"].items()),
                  "the Service does not select the Job's pod")

    autoscaler = one(docs, "HorizontalPodAutoscaler")
    if hpa:
        check(autoscaler is not None and autoscaler["apiVersion"] == "autoscaling/v2",
              "a HorizontalPodAutoscaler (autoscaling/v2)")
        check("replicas" not in deployment["spec"], "the autoscaler, not the Deployment, sets replicas")
    else:
        check(autoscaler is None, "no HorizontalPodAutoscaler")
        check("replicas" in deployment["spec"], "the Deployment sets replicas")

    budget = one(docs, "PodDisruptionBudget")
    if pdb:
        check(budget is not None and budget["apiVersion"] == "policy/v1", "a PodDisruptionBudget (policy/v1)")
    else:
        check(budget is None, "no PodDisruptionBudget")


def compose(path):
    with open(path) as source:
        project = json.load(source)
    services = project["services"]
    print(f"compose promises: {path}")
    check(services["postgres"]["image"].startswith("postgres:16"), "PostgreSQL 16")
    openbao = services["openbao"]
    command = openbao.get("command") or []
    check(openbao["image"].startswith("openbao/openbao"), "OpenBao's image")
    check(command[:1] == ["server"] and not any(a.startswith("-dev") for a in command),
          "OpenBao in server mode, not -dev")
    check(any(v.get("target") == "/openbao/config/openbao.hcl" for v in openbao.get("volumes", [])),
          "openbao.hcl mounted as its configuration")
    init = services["openbao-init"]
    check(any(v.get("type") == "volume" and v.get("source") == "openbao-unseal" for v in init.get("volumes", [])),
          "the unseal material lives in a named volume")
    check(services["migrate"].get("command") == ["migrate"], "a one-shot `aimc migrate`")
    for name in ("aimc-1", "aimc-2"):
        depends = services[name].get("depends_on", {})
        check(all(depends.get(s, {}).get("condition") == "service_completed_successfully"
                  for s in ("migrate", "openbao-init")),
              f"{name} waits for migrate and openbao-init to complete")
        check(services[name]["environment"].get("AIMC_LISTEN") == "0.0.0.0:8080", f"{name} listens on 8080")
    proxy = services["haproxy"]
    check(len(proxy.get("ports", [])) == 1, "the load balancer publishes one port")
    config = os.path.join(os.path.dirname(os.path.abspath(__file__)), "../compose/haproxy.cfg")
    with open(config) as source:
        text = source.read()
    check("uri /readyz" in text and "server aimc-1 " in text and "server aimc-2 " in text,
          "the load balancer checks /readyz on both replicas")


def known_settings(aimc):
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIMC_")}
    with tempfile.TemporaryDirectory() as empty:
        shown = subprocess.run([aimc, "config", "show"], env=env, cwd=empty,
                               capture_output=True, text=True)
    if shown.returncode != 0:
        sys.exit(f"{aimc} config show failed: {shown.stderr}")
    names = set()
    for line in shown.stdout.splitlines():
        match = re.match(r"^(?:# )?([a-z0-9_]+)(?: = | is not set)", line)
        if match:
            names.add(match.group(1))
    return names


def aimc_environments(compose_json, chart_files):
    """(label, {name: value}) for every aimc container; secret references get placeholders."""
    with open(compose_json) as source:
        services = json.load(source)["services"]
    for name, service in sorted(services.items()):
        if (service.get("build") or {}).get("dockerfile") == "deploy/Dockerfile":
            yield f"compose {name}", dict(service.get("environment") or {})
    for path in chart_files:
        for doc in documents(path):
            if doc.get("kind") not in ("Deployment", "Job"):
                continue
            for container in doc["spec"]["template"]["spec"]["containers"]:
                env = {}
                for entry in container.get("env", []):
                    if "value" in entry:
                        env[entry["name"]] = str(entry["value"])
                    else:
                        env[entry["name"]] = PLACEHOLDERS.get(entry["name"], "placeholder")
                yield f"{os.path.basename(path)} {doc['kind']}/{container['name']}", env


def settings(aimc, compose_json, chart_files):
    known = known_settings(aimc)
    print(f"settings: {len(known)} known to {aimc}")
    with tempfile.TemporaryDirectory() as scratch:
        token_file = os.path.join(scratch, "vault.toml")
        with open(token_file, "w") as out:
            out.write('vault_token = "s.placeholder-token"\n')
        for label, env in aimc_environments(compose_json, chart_files):
            names = sorted(n for n in env if n.startswith("AIMC_"))
            unknown, run_env = [], {k: v for k, v in os.environ.items() if not k.startswith("AIMC_")}
            for name in names:
                key = name[len("AIMC_"):].lower()
                if key in known or key in TOOL_VARIABLES:
                    run_env[name] = env[name]
                else:
                    unknown.append(name)
            check(not unknown, f"{label}: {len(names)} AIMC_* variables, all settings"
                  + (f" (unknown: {', '.join(unknown)})" if unknown else ""))
            if "AIMC_CONFIG_FILE" in run_env:
                run_env["AIMC_CONFIG_FILE"] = token_file
            with tempfile.TemporaryDirectory() as empty:
                shown = subprocess.run([aimc, "config", "show"], env=run_env, cwd=empty,
                                       capture_output=True, text=True)
            check(shown.returncode == 0, f"{label}: `aimc config show` accepts the values"
                  + ("" if shown.returncode == 0 else f": {shown.stderr.strip()}"))
            if label.startswith("compose aimc-"):
                check('vault_token = "[redacted]"' in shown.stdout,
                      f"{label}: the Vault token comes from AIMC_CONFIG_FILE")


def main(argv):
    if len(argv) >= 2 and argv[0] == "chart":
        chart(argv[1], hpa="--no-hpa" not in argv, pdb="--no-pdb" not in argv)
    elif len(argv) == 2 and argv[0] == "compose":
        compose(argv[1])
    elif len(argv) >= 4 and argv[0] == "settings":
        settings(argv[1], argv[2], argv[3:])
    else:
        sys.exit(__doc__)
    finish()


if __name__ == "__main__":
    main(sys.argv[1:])
