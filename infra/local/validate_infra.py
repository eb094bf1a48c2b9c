"""Checks of the deployment files that need more than a command line: run by
infra/local/validate-infra.sh with the venv's Python, which holds kubernetes-validate and
PyYAML. Each subcommand prints what it found wrong and exits non-zero when anything is.

  manifests RENDERED K8S_VERSION     every document against that Kubernetes version's schemas
  dockerfile-bins DOCKERFILE         every binary an image builds, copies or runs is one of the
                                     workspace's (reads `cargo metadata` JSON on stdin)
  compose-targets COMPOSE_JSON DOCKERFILE
                                     every build target Compose names is a stage of the file
  haproxy-env-compose COMPOSE_JSON   the haproxy service's GEOLEDGER_* environment, one
                                     NAME=value a line
  haproxy-env-chart RENDERED DIR     writes the chart's HAProxy files into DIR and prints the
                                     container's GEOLEDGER_* environment, one NAME=value a line
"""

import json
import re
import sys
from pathlib import Path

import kubernetes_validate
import yaml


def fail(problems):
    for problem in problems:
        print(f"  {problem}", file=sys.stderr)
    return 1 if problems else 0


def documents(path):
    with open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc]


def check_manifests(rendered, version):
    """The library call, not the command line: the command line only warns about a kind it
    has no schema for, and a misspelt apiVersion must fail here."""
    problems = []
    docs = documents(rendered)
    if not docs:
        problems.append(f"{rendered}: no manifests")
    for doc in docs:
        name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(p) for p in e.path)
            problems.append(f"{name}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError:
            problems.append(
                f"{name}: Kubernetes {version} has no {doc.get('apiVersion')} {doc.get('kind')}"
            )
    if not problems:
        print(f"  {len(docs)} manifests valid against Kubernetes {version}")
    return fail(problems)


def check_dockerfile_bins(dockerfile):
    metadata = json.load(sys.stdin)
    workspace_bins = {
        target["name"]
        for package in metadata["packages"]
        for target in package["targets"]
        if "bin" in target["kind"]
    }
    text = Path(dockerfile).read_text(encoding="utf-8")
    # Continuation lines are joined so that a `--bin` on the next line still counts.
    text = re.sub(r"\\\n", " ", text)
    built = set(re.findall(r"--bin[ =]([A-Za-z0-9_-]+)", text))
    copied = set(re.findall(r"/target/release/([A-Za-z0-9_-]+)", text))
    run = set(re.findall(r'ENTRYPOINT \["/usr/local/bin/([A-Za-z0-9_-]+)"', text))
    problems = []
    if not run:
        problems.append(f"{dockerfile}: no image runs a binary (ENTRYPOINT)")
    for kind, names in (("builds", built), ("copies", copied), ("runs", run)):
        problems += [
            f"{dockerfile} {kind} `{n}`, which is not a binary of the workspace "
            f"({', '.join(sorted(workspace_bins))})"
            for n in sorted(names - workspace_bins)
        ]
    problems += [f"{dockerfile} copies `{n}` but never builds it" for n in sorted(copied - built)]
    problems += [f"{dockerfile} runs `{n}` but never copies it" for n in sorted(run - copied)]
    if not problems:
        print(f"  images run {', '.join(sorted(run))}, all built from the workspace")
    return fail(problems)


def stages(dockerfile):
    text = Path(dockerfile).read_text(encoding="utf-8")
    return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", text, re.MULTILINE | re.IGNORECASE))


def check_compose_targets(compose_json, dockerfile):
    config = json.loads(Path(compose_json).read_text(encoding="utf-8"))
    known = stages(dockerfile)
    problems = []
    for name, service in config.get("services", {}).items():
        target = (service.get("build") or {}).get("target")
        if target is not None and target not in known:
            problems.append(f"service {name} builds target `{target}`, not a stage of {dockerfile}")
    return fail(problems)


def print_env(env):
    for key, value in sorted(env.items()):
        if key.startswith("GEOLEDGER_"):
            if "\n" in str(value):
                raise SystemExit(f"{key}: a value on several lines cannot be passed on")
            print(f"{key}={value}")


def haproxy_env_compose(compose_json):
    config = json.loads(Path(compose_json).read_text(encoding="utf-8"))
    print_env(config["services"]["haproxy"].get("environment") or {})
    return 0


def haproxy_env_chart(rendered, out_dir):
    """Recreates the files the HAProxy pod mounts, from the rendered ConfigMap and the
    Deployment's volume items, so that `haproxy -c` reads exactly what the pod would."""
    docs = documents(rendered)
    deployment = next(
        d
        for d in docs
        if d["kind"] == "Deployment" and d["metadata"]["name"].endswith("-haproxy")
    )
    pod = deployment["spec"]["template"]["spec"]
    volume = next(v for v in pod["volumes"] if "configMap" in v)
    config_map = next(
        d
        for d in docs
        if d["kind"] == "ConfigMap" and d["metadata"]["name"] == volume["configMap"]["name"]
    )
    for item in volume["configMap"]["items"]:
        target = Path(out_dir, item["path"])
        target.parent.mkdir(parents=True, exist_ok=True)
        # Verbatim, as the kubelet writes a ConfigMap's keys: a missing final newline here
        # is one HAProxy would refuse in the cluster.
        target.write_text(config_map["data"][item["key"]], encoding="utf-8")
    container = pod["containers"][0]
    print_env({e["name"]: e["value"] for e in container.get("env", []) if "value" in e})
    return 0


def main(argv):
    commands = {
        "manifests": check_manifests,
        "dockerfile-bins": check_dockerfile_bins,
        "compose-targets": check_compose_targets,
        "haproxy-env-compose": haproxy_env_compose,
        "haproxy-env-chart": haproxy_env_chart,
    }
    if len(argv) < 2 or argv[1] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[1]](*argv[2:])


if __name__ == "__main__":
    sys.exit(main(sys.argv))
