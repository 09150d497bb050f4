"""The deployment files: they parse, they validate against their schemas, they run commands the `escalate`
CLI has, they read only the configuration DESIGN.md and the code define, and the systemd units name the
same commands as the handbook (deploy/README.md).

Schemas: the Compose Specification's JSON schema (vendored by check-jsonschema) for deploy/compose.yaml,
with the file interpolated the way compose does it; Kubernetes' OpenAPI-derived JSON schemas
(kubernetes-validate, strict) for deploy/k8s/. `docker compose config` is used as well where the compose
plugin is installed (it needs no engine).
"""

from __future__ import annotations

import importlib.resources
import json
import multiprocessing
import re
import runpy
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from worker.cli import build_parser
from worker.config import Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
HANDBOOK = DEPLOY / "README.md"
ENV_EXAMPLE = DEPLOY / "escalate.env.example"
K8S_VERSION = "1.30.0"
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def load_yaml_documents(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def assert_cli_accepts(args: list[str], where: str) -> None:
    try:
        parsed = build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"{where}: `escalate {' '.join(args)}` is not a command the CLI accepts")
    assert callable(parsed.func), where


def escalate_commands_in(text: str) -> set[str]:
    """`escalate …` command lines in a document (inline code and shell blocks), options included."""
    found = set()
    for match in re.finditer(r"(?:^|[\s`$/])escalate ((?:[a-z][\w-]*)(?: [^`\n|;&#]*)?)", text, re.MULTILINE):
        found.add("escalate " + match.group(1).strip())
    return found


# -- configuration names ------------------------------------------------------------------------


def known_variables() -> set[str]:
    """Every variable the code reads: the Settings' names and the ones the modules read themselves."""
    names = set(Settings.ENV_NAMES.values())
    sources = [*ROOT.glob("worker/**/*.py"), *ROOT.glob("connector/**/*.py"), DEPLOY / "gunicorn.conf.py"]
    text = "\n".join(p.read_text(encoding="utf-8") for p in sources if "sandbox" not in p.parts)
    for candidate in env_example():
        if re.search(rf"[\"']{candidate}[\"']", text):
            names.add(candidate)
    return names


def test_the_env_example_lists_every_setting_and_only_real_ones():
    example = env_example()
    assert set(Settings.ENV_NAMES.values()) <= set(example), "a DESIGN.md setting is missing from the example"
    unknown = set(example) - known_variables() - {"POSTGRES_PASSWORD"}  # compose's own, documented there
    assert not unknown, f"the example sets variables nothing reads: {sorted(unknown)}"
    for name in ("ZENDESK_API_TOKEN", "ZENDESK_WEBHOOK_SECRET", "JIRA_API_TOKEN", "JIRA_WEBHOOK_SECRET"):
        assert example[name] == "", f"{name} must be empty in the example, never a value"


# -- compose ------------------------------------------------------------------------------------


def interpolate(node: Any, env: dict[str, str]) -> Any:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR:?error} interpolation, for the schema check."""
    if isinstance(node, dict):
        return {k: interpolate(v, env) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolate(v, env) for v in node]
    if not isinstance(node, str):
        return node

    def value(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        assert op is not None and "?" not in op, f"compose would stop: {name} is required ({arg})"
        return arg or ""

    return INTERPOLATION.sub(value, node)


def compose() -> dict[str, Any]:
    [document] = load_yaml_documents(DEPLOY / "compose.yaml")
    return document


def test_compose_file_validates_against_the_compose_specification():
    vendor = pytest.importorskip("check_jsonschema.builtin_schemas.vendor")
    from jsonschema.validators import validator_for

    schema = json.loads((importlib.resources.files(vendor) / "compose-spec.json").read_text(encoding="utf-8"))
    validator = validator_for(schema)(schema)
    env = {**env_example(), "POSTGRES_PASSWORD": "example-password"}
    for document in (compose(), interpolate(compose(), env)):
        errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]
        assert not errors, errors
    # The schema does catch mistakes (so a pass above means something).
    broken = interpolate(compose(), env)
    broken["services"]["web"]["restart_policy"] = "always"
    assert list(validator.iter_errors(broken))


def test_compose_needs_the_database_password_and_reads_only_known_variables():
    referenced = set()
    for line in (DEPLOY / "compose.yaml").read_text(encoding="utf-8").splitlines():
        if not line.lstrip().startswith("#"):
            referenced |= {m.group(1) for m in INTERPOLATION.finditer(line)}
    assert referenced <= set(env_example()) | {"ESCALATE_VERSION"}
    with pytest.raises(AssertionError, match="POSTGRES_PASSWORD"):
        interpolate(compose(), {})


def test_compose_runs_web_scalable_workers_redis_and_postgres_from_one_image():
    services = compose()["services"]
    assert {"web", "worker", "redis", "postgres", "migrate"} <= set(services)
    web, worker = services["web"], services["worker"]
    assert web["image"] == worker["image"] == services["migrate"]["image"]
    assert web["build"] == worker["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert worker["deploy"]["replicas"] >= 2 and "ports" not in worker and "container_name" not in worker
    assert (
        "--maxmemory-policy" in services["redis"]["command"] and "noeviction" in services["redis"]["command"]
    )
    assert web["environment"]["PROMETHEUS_MULTIPROC_DIR"] == worker["environment"]["PROMETHEUS_MULTIPROC_DIR"]
    for name, service in services.items():
        if "command" in service and service.get("image", "").startswith("escalate"):
            assert_cli_accepts(service["command"], f"compose service {name}")
        for check in [service.get("healthcheck", {}).get("test", [])]:
            if check[:2] == ["CMD", "escalate"]:
                assert_cli_accepts(check[2:], f"compose healthcheck of {name}")


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_accepts_the_file_when_the_plugin_is_there(tmp_path):
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip("the docker compose plugin is not installed (the schema check above stands in for it)")
    project = tmp_path / "deploy"
    project.mkdir()
    shutil.copy(DEPLOY / "compose.yaml", project / "compose.yaml")
    example = ENV_EXAMPLE.read_text(encoding="utf-8")
    (project / ".env").write_text(example + "\nPOSTGRES_PASSWORD=example-password\n", encoding="utf-8")
    done = subprocess.run(
        ["docker", "compose", "-f", str(project / "compose.yaml"), "config", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


# -- Kubernetes ---------------------------------------------------------------------------------


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, doc) for p in sorted((DEPLOY / "k8s").glob("*.yaml")) for doc in load_yaml_documents(p)]


def test_kubernetes_manifests_validate_against_the_api_schemas():
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    checked = 0
    for name, doc in k8s_documents():
        if doc.get("kind") == "Kustomization":
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name}: {exc}")
        checked += 1
    assert checked >= 7
    with pytest.raises(kubernetes_validate.ValidationError):  # and it does catch mistakes
        broken = next(d for _, d in k8s_documents() if d.get("kind") == "Deployment")
        broken = json.loads(json.dumps(broken))
        broken["spec"]["replicas"] = "two"
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_every_manifest_but_the_example_secret():
    [kustomization] = load_yaml_documents(DEPLOY / "k8s" / "kustomization.yaml")
    files = {p.name for p in (DEPLOY / "k8s").glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files - {"secret.example.yaml"}


def deployments() -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for _, doc in k8s_documents() if doc.get("kind") == "Deployment"}


def test_web_and_worker_deployments_have_probes_config_and_secrets():
    found = deployments()
    web = found["escalate-web"]["spec"]["template"]["spec"]
    worker = found["escalate-worker"]["spec"]["template"]["spec"]
    [web_container] = web["containers"]
    assert web_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert web_container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    worker_container = next(c for c in worker["containers"] if c["name"] == "worker")
    assert worker_container["livenessProbe"]["exec"]["command"][:1] == ["escalate"]
    assert_cli_accepts(worker_container["livenessProbe"]["exec"]["command"][1:], "worker liveness probe")
    for spec in (web, worker):
        assert spec["securityContext"]["runAsNonRoot"] is True
        for container in spec["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert_cli_accepts(container["args"], f"container {container['name']}")
        main = spec["containers"][0]
        sources = {next(iter(ref)): ref[next(iter(ref))]["name"] for ref in main["envFrom"]}
        assert sources == {"configMapRef": "escalate-config", "secretRef": "escalate-secrets"}
    assert worker["terminationGracePeriodSeconds"] > 300  # a job may run 300 s (worker/queue.py)


def test_config_and_secret_keys_are_settings_the_code_reads():
    known = known_variables()
    for _, doc in k8s_documents():
        if doc.get("kind") in ("ConfigMap", "Secret"):
            keys = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
            assert keys <= known, sorted(keys - known)
    config = next(d for _, d in k8s_documents() if d.get("kind") == "ConfigMap")["data"]
    secret = next(d for _, d in k8s_documents() if d.get("kind") == "Secret")["stringData"]
    for secret_name in ("ZENDESK_API_TOKEN", "JIRA_API_TOKEN", "REDIS_URL", "DATABASE_URL"):
        assert secret_name in secret and secret_name not in config
    assert set(Settings.ENV_NAMES.values()) - {"ESCALATE_RULES"} <= set(config) | set(secret)


# -- systemd ------------------------------------------------------------------------------------


def unit(path: Path) -> dict[str, list[str]]:
    """key -> values (systemd allows repeated keys), across sections."""
    entries: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            entries.setdefault(key.strip(), []).append(value.strip())
    return entries


def test_systemd_units_name_the_same_commands_as_the_handbook():
    handbook = HANDBOOK.read_text(encoding="utf-8")
    documented = escalate_commands_in(handbook)
    units = sorted((DEPLOY / "systemd").glob("*.service"))
    assert {u.name for u in units} >= {
        "escalate-web.service",
        "escalate-worker@.service",
        "escalate-migrate.service",
    }
    for path in units:
        entries = unit(path)
        [start] = entries["ExecStart"]
        argv = shlex.split(start)
        assert argv[0] == "/opt/escalate/venv/bin/escalate", path.name
        assert_cli_accepts(argv[1:], path.name)
        command = "escalate " + " ".join(argv[1:])
        assert command in documented, f"{path.name} runs `{command}`, which the handbook does not show"
        assert entries["User"] == ["escalate"] and entries["EnvironmentFile"] == [
            "/etc/escalate/escalate.env"
        ]
        assert path.name in handbook, f"the handbook does not mention {path.name}"
    assert "/etc/escalate/escalate.env" in handbook


def test_every_command_the_handbook_shows_is_one_the_cli_has():
    for command in escalate_commands_in(HANDBOOK.read_text(encoding="utf-8")):
        # Placeholders (JOB_ID, REVISION, <id>) stand for a value: give the parser one.
        argv = ["x" if re.fullmatch(r"[A-Z_]+|<[^>]+>", a) else a for a in command.split()[1:]]
        if argv and argv[0] in ("jobs", "db", "doctor", "worker", "serve", "metrics", "dashboard", "probe"):
            assert_cli_accepts(argv, f"handbook: {command}")


# -- the image ----------------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_non_root_and_one_image_for_every_process():
    text = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2 and stages[0][1] == "build"
    final = text[text.rfind("\nFROM ") :]
    assert "COPY --from=build" in final
    [user] = re.findall(r"^USER\s+(\S+)", final, re.MULTILINE)
    assert user.split(":")[0] not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["escalate"\]', final, re.MULTILINE)
    assert re.search(r'^CMD \["serve"\]', final, re.MULTILINE)
    assert not re.search(r"^(ENV|ARG)\s+.*(TOKEN|SECRET|PASSWORD)\s*=", text, re.MULTILINE), (
        "no secret in the image"
    )
    # Everything the build copies is let through by .dockerignore (an allow-list).
    allowed = {
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    for source in re.findall(r"^COPY\s+(?!--from)(.+)\s+\S+$", text, re.MULTILINE):
        for item in source.split():
            assert item.rstrip("/") in allowed, f"{item} is copied but excluded by .dockerignore"


# -- gunicorn -----------------------------------------------------------------------------------


def gunicorn_settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    """deploy/gunicorn.conf.py as gunicorn reads it, in an environment with ``env`` set."""
    for name in ("WEB_CONCURRENCY", "ESCALATE_ACCESS_LOG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(DEPLOY / "gunicorn.conf.py"))


def test_gunicorn_runs_sync_workers_one_per_core_and_a_spare(monkeypatch):
    settings = gunicorn_settings(monkeypatch)
    assert settings["worker_class"] == "sync"
    assert settings["workers"] == min(multiprocessing.cpu_count() + 1, 8)
    assert gunicorn_settings(monkeypatch, WEB_CONCURRENCY="5")["workers"] == 5


@pytest.mark.parametrize(("value", "accesslog"), [(None, "-"), ("on", "-"), ("off", None), ("0", None)])
def test_the_access_log_is_on_unless_the_deployment_turns_it_off(monkeypatch, value, accesslog):
    env = {} if value is None else {"ESCALATE_ACCESS_LOG": value}
    settings = gunicorn_settings(monkeypatch, **env)
    assert settings["accesslog"] == accesslog
    assert "%(q)s" not in settings["access_log_format"]  # never query strings (signed sidebar tokens)
