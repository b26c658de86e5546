"""The deployment files (docs/deploy.md, deploy/liverelay.service, deploy/Dockerfile) against
the project they deploy, so that neither can drift from it unnoticed:

- the systemd unit passes `systemd-analyze verify` with no warning (a copy whose ExecStart
  is this venv's `liverelay`: verify insists the binary exists), rates "OK" or better in
  `systemd-analyze security --offline`, and carries the sandboxing options docs/deploy.md
  describes;
- a real node runs inside that sandbox as far as it can be rebuilt without systemd as PID 1
  (unshare + setpriv: ProtectSystem=strict, ReadWritePaths, ProtectHome, NoNewPrivileges,
  no capabilities) and pulls an SRT source through ffmpeg there; SIGTERM stops it well within
  the unit's TimeoutStopSec;
- every TOML example in docs/deploy.md loads with liverelay's own settings loader, and every
  setting, LIVERELAY_* variable and `liverelay ...` command the docs, the unit and the
  Dockerfile name exists;
- the Dockerfile (not built here: no container engine) uses only known instructions, Debian
  slim bases, Debian's ffmpeg, a non-root user, a volume at the data dir, EXPOSEs exactly the
  ports its environment configures, and `.dockerignore` keeps .venv and node_modules out.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from tests.conftest import REPO, TEST_AK, TEST_SK, free_port, require_tool, wait_port
from tests.integration.test_relay_v4_sources import srt_listener

from liverelay.api.console import VENDOR_FILES
from liverelay.cli.app import cli
from liverelay.config import ENV_ALIASES, SECTIONS, env_var_for, load_settings, setting_names
from liverelay.sdk import LiveService

UNIT = REPO / "deploy" / "liverelay.service"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
DOCS = REPO / "docs" / "deploy.md"
INSTALLED_BINARY = "/opt/liverelay/venv/bin/liverelay"  # where docs/deploy.md installs it

# Named by docs/deploy.md and added by other branches of the same cluster work (the
# `cluster` settings section; the `node` and `cluster` command groups). A pending name is
# let through only while its whole section or command group is missing: once the section
# or group exists, the name must be in it like every other (these sets can then go).
PENDING_SETTINGS = {"cluster.node_id", "cluster.advertise_host"}
PENDING_COMMANDS = {("node", "drain"), ("cluster", "status")}


def pending_settings() -> set[str]:
    return {name for name in PENDING_SETTINGS if name.partition(".")[0] not in SECTIONS}


def pending_commands() -> set[tuple[str, str]]:
    ctx = click.Context(cli)
    return {(group, sub) for group, sub in PENDING_COMMANDS if cli.get_command(ctx, group) is None}


# -- parsing ---------------------------------------------------------------------------------


def unit_options(text: str) -> dict[str, dict[str, list[str]]]:
    """section -> key -> every value given (systemd allows repeats), comments skipped."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"option outside a section: {line!r}"
        key, sep, value = line.partition("=")
        assert sep, f"not KEY=VALUE: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(options: dict[str, list[str]], key: str) -> str:
    values = options.get(key)
    assert values is not None and len(values) == 1, f"{key}: expected one value, got {values}"
    return values[0]


def fenced_blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.S | re.M)


@dataclass
class Instruction:
    keyword: str
    args: str


DOCKER_INSTRUCTIONS = {
    "FROM", "RUN", "CMD", "LABEL", "EXPOSE", "ENV", "ADD", "COPY", "ENTRYPOINT", "VOLUME",
    "USER", "WORKDIR", "ARG", "ONBUILD", "STOPSIGNAL", "HEALTHCHECK", "SHELL",
}  # fmt: skip


def dockerfile_instructions(text: str) -> list[Instruction]:
    """Instructions with their continuation lines joined; comment lines dropped."""
    out: list[Instruction] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = (pending + line).strip()
        pending = ""
        keyword, _, args = whole.partition(" ")
        out.append(Instruction(keyword, args.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def env_pairs(args: str) -> dict[str, str]:
    """ENV a=b c=d (the key=value form) as a dict."""
    pairs = {}
    for token in shlex.split(args):
        key, sep, value = token.partition("=")
        assert sep, f"ENV in the key=value form only: {token!r}"
        pairs[key] = value
    return pairs


def known_env_vars() -> set[str]:
    return {env_var_for(name) for name in setting_names()} | set(ENV_ALIASES)


def pending_env_vars() -> set[str]:
    return {"LIVERELAY_" + name.replace(".", "_").upper() for name in pending_settings()}


def without_pending(toml_text: str) -> dict[str, object]:
    """The TOML document, minus the pending settings whose section does not exist yet."""
    doc: dict[str, object] = tomllib.loads(toml_text)
    for name in pending_settings():
        section, _, key = name.partition(".")
        table = doc.get(section)
        if isinstance(table, dict):
            table.pop(key, None)
            if not table:
                del doc[section]
    return doc


def dump_toml(doc: dict[str, object]) -> str:
    """Enough TOML for the docs' examples: scalars and one level of tables (JSON strings are TOML)."""
    lines = [f"{k} = {json.dumps(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for name, table in doc.items():
        if isinstance(table, dict):
            lines.append(f"[{name}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"


# -- the systemd unit --------------------------------------------------------------------------


def test_unit_sets_the_documented_service_and_sandboxing_options() -> None:
    unit = unit_options(UNIT.read_text())
    service = unit["Service"]
    assert one(service, "Type") == "simple"  # the node does not speak sd_notify
    src = "\n".join(p.read_text() for p in (REPO / "src").rglob("*.py"))
    assert "NOTIFY_SOCKET" not in src and "sd_notify" not in src, "the node notifies now: Type=notify?"
    argv = shlex.split(one(service, "ExecStart"))
    assert argv[:4] == [INSTALLED_BINARY, "serve", "--config", "/etc/liverelay/liverelay.toml"], argv
    assert (one(service, "User"), one(service, "Group")) == ("liverelay", "liverelay")
    assert one(service, "StateDirectory") == "liverelay"
    assert one(service, "ReadWritePaths") == "/var/lib/liverelay"
    expected = {
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "Restart": "on-failure",
        "KillSignal": "SIGTERM",
        "KillMode": "mixed",
    }
    assert {key: one(service, key) for key in expected} == expected
    assert set(one(service, "RestrictAddressFamilies").split()) == {"AF_INET", "AF_INET6", "AF_UNIX"}
    assert int(one(service, "LimitNOFILE")) >= 65536  # a socket per viewer
    assert one(service, "CapabilityBoundingSet") == ""  # every default port is above 1024
    assert "MemoryDenyWriteExecute" not in service  # docs/deploy.md says why not
    assert int(one(service, "TimeoutStopSec")) >= 10
    # The unit names the same paths as the docs.
    docs = DOCS.read_text()
    assert "/etc/liverelay/liverelay.toml" in docs and INSTALLED_BINARY.rsplit("/bin/", 1)[0] in docs


def _unit_copy(tmp_path: Path) -> Path:
    """The unit with ExecStart on this venv's liverelay: `verify` checks the binary exists."""
    binary = Path(sys.executable).parent / "liverelay"
    assert binary.is_file(), binary
    text = UNIT.read_text()
    assert text.count(INSTALLED_BINARY) == 1
    copy = tmp_path / "liverelay.service"
    copy.write_text(text.replace(INSTALLED_BINARY, str(binary)))
    return copy


def _verify(analyze: str, unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", install="apt-get install systemd")
    copy = _unit_copy(tmp_path)
    result = _verify(analyze, copy)
    # verify exits 0 on an unknown key or a bad value (it ignores them): any output is a finding.
    assert result.returncode == 0 and (result.stdout + result.stderr).strip() == "", result
    # The same check catches a typo (so it can fail).
    broken = tmp_path / "broken" / "liverelay.service"
    broken.parent.mkdir()
    broken.write_text(copy.read_text().replace("ProtectHome=yes", "ProtectHome=yes\nProtectHom=yes"))
    assert "ProtectHom" in _verify(analyze, broken).stderr


def test_unit_sandbox_rates_ok_in_systemd_analyze_security(tmp_path: Path) -> None:
    analyze = require_tool("systemd-analyze", install="apt-get install systemd")
    result = subprocess.run(
        [analyze, "security", "--offline=yes", "--no-pager", str(_unit_copy(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for liverelay\.service: ([0-9.]+)", result.stdout)
    assert found, result
    # 0 = fully locked down, 10 = unprotected; systemd calls up to 3.9 "OK" (the unit: 1.5).
    assert float(found.group(1)) <= 2.0, result.stdout[-2000:]


SANDBOX_SCRIPT = r"""
set -eu
state=$1; shift
# ProtectSystem=strict: every mount read-only, the API file systems aside.
for m in $(awk '{print $5}' /proc/self/mountinfo | sort -u); do
  case "$m" in /proc|/proc/*|/sys|/sys/*|/dev|/dev/*) continue ;; esac
  mount -o remount,bind,ro "$m" 2>/dev/null || true
done
if touch /usr/.liverelay-sandbox-probe 2>/dev/null; then echo "/usr is writable" >&2; exit 97; fi
# ReadWritePaths= (the state directory).
mount --bind "$state" "$state"
mount -o remount,bind,rw "$state"
# ProtectHome=yes (/root stays: this venv's Python lives under /root/.pyenv on CI machines).
if [ -d /home ]; then mount -t tmpfs -o ro,mode=000 tmpfs /home; fi
# NoNewPrivileges=yes and CapabilityBoundingSet= (empty): exec'd without any capability.
exec setpriv --nnp --inh-caps=-all --bounding-set=-all -- "$@"
"""


SANDBOX = ["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX_SCRIPT, "sandbox"]


def _proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        kids += [int(p) for p in (task / "children").read_text().split()]
    return kids


@pytest.fixture
def sandboxed_node(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """`liverelay serve` inside the unit's sandbox, rebuilt with unshare + setpriv."""
    require_tool("unshare", install="apt-get install util-linux")
    require_tool("setpriv", install="apt-get install util-linux")
    unit = unit_options(UNIT.read_text())["Service"]
    # The script rebuilds exactly these; a change to them in the unit must change it too.
    assert (one(unit, "ProtectSystem"), one(unit, "ProtectHome"), one(unit, "NoNewPrivileges")) == (
        "strict",
        "yes",
        "yes",
    )
    state = tmp_path / "state"
    state.mkdir()
    api_port, http_port, rtmp_port = free_port(), free_port(), free_port()
    node = [sys.executable, "-m", "liverelay", "serve", "--data-dir", str(state)]
    node += ["--api-listen", f"127.0.0.1:{api_port}", "--http-listen", f"127.0.0.1:{http_port}"]
    node += ["--rtmp-listen", f"127.0.0.1:{rtmp_port}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVERELAY_")}
    env.update({"ACCESS_KEY_ID": TEST_AK, "ACCESS_KEY_SECRET": TEST_SK, "PYTHONUNBUFFERED": "1"})
    log_path = tmp_path / "node.log"
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [*SANDBOX, str(state), *node],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
    try:
        for port in (api_port, http_port, rtmp_port):
            try:
                wait_port(port, timeout=20)
            except TimeoutError:
                raise AssertionError(f"the sandboxed node did not start:\n{log_path.read_text()}") from None
        yield proc, api_port, log_path
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_node_pulls_an_srt_source_through_ffmpeg_inside_the_sandbox(
    sandboxed_node: tuple[subprocess.Popen[bytes], int, Path], ffmpeg: str, sample_flv: Path
) -> None:
    proc, api_port, log_path = sandboxed_node
    status = _proc_status(proc.pid)
    assert (status["NoNewPrivs"], int(status["CapEff"], 16)) == ("1", 0), status
    srt_port = free_port()
    with (
        srt_listener(ffmpeg, sample_flv, srt_port),
        LiveService(f"127.0.0.1:{api_port}", TEST_AK, TEST_SK, scheme="http", max_retries=0) as svc,
    ):
        svc.create_relay_source_v4(
            {
                "Vhost": "__defaultVhost__",
                "App": "live",
                "Stream": "srt",
                "SrcAddrS": [f"srt://127.0.0.1:{srt_port}?streamid=live/x"],
            }
        )
        deadline = time.monotonic() + 30
        rows: list[dict[str, object]] = []
        while time.monotonic() < deadline:
            rows = svc.describe_relay_status({"Type": "fixed"})["Result"]["RelayStatusList"]
            if rows and rows[0]["State"] == "up" and int(str(rows[0]["Frames"])) > 30:
                break
            time.sleep(0.2)
        else:
            raise AssertionError(f"the SRT relay never delivered media: {rows}\n{log_path.read_text()}")
        ffmpegs = [p for p in _children(proc.pid) if Path(f"/proc/{p}/exe").resolve().name == "ffmpeg"]
        assert ffmpegs, "no ffmpeg child of the node"
        child = _proc_status(ffmpegs[0])
        assert (child["NoNewPrivs"], int(child["CapEff"], 16)) == ("1", 0), child
        # The graceful stop, with the relay and its ffmpeg running, fits the unit's bound.
        timeout_stop = int(one(unit_options(UNIT.read_text())["Service"], "TimeoutStopSec"))
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=timeout_stop)
        took = time.monotonic() - started
    assert proc.returncode == 0, log_path.read_text()[-3000:]
    assert took < timeout_stop / 3, f"SIGTERM took {took:.1f}s; TimeoutStopSec={timeout_stop}"
    print(f"\nsandboxed node: SRT relay up; SIGTERM to exit {took:.2f}s (TimeoutStopSec {timeout_stop})")


# -- docs/deploy.md ----------------------------------------------------------------------------


def test_docs_toml_examples_load_with_the_settings_loader(tmp_path: Path) -> None:
    blocks = fenced_blocks(DOCS.read_text(), "toml")
    assert blocks, "docs/deploy.md has no TOML example"
    for i, block in enumerate(blocks):
        doc = tomllib.loads(block)
        path = tmp_path / f"example{i}.toml"
        path.write_text(dump_toml(without_pending(block)))
        settings = load_settings(path, env={})
        # The example is the node the unit runs: its data_dir is the unit's state directory.
        if "data_dir" in doc:
            state = one(unit_options(UNIT.read_text())["Service"], "StateDirectory")
            assert settings.data_dir == Path("/var/lib") / state
        if "cluster" in doc:
            cluster = doc["cluster"]
            assert isinstance(cluster, dict)
            assert {f"cluster.{key}" for key in cluster} <= set(setting_names()) | pending_settings()


def test_docs_name_only_settings_and_variables_that_exist() -> None:
    text = DOCS.read_text() + UNIT.read_text() + DOCKERFILE.read_text()
    sections = "|".join(sorted({*SECTIONS, "cluster"}))
    named = set(re.findall(rf"`({sections})\.([a-z_]+)", text))
    assert named, "the docs name no setting"
    unknown = {f"{s}.{k}" for s, k in named} - set(setting_names()) - pending_settings()
    assert not unknown, f"docs/deploy.md names settings liverelay does not have: {sorted(unknown)}"
    top = set(re.findall(r"`(data_dir|database_[a-z_]+|log_level)`", text))
    assert top <= set(setting_names()), top
    variables = set(re.findall(r"\bLIVERELAY_[A-Z0-9_]+", text))
    unknown_vars = variables - known_env_vars() - pending_env_vars()
    assert not unknown_vars, f"unknown environment variables: {sorted(unknown_vars)}"


def _commands_in(text: str) -> set[tuple[str, ...]]:
    """(`liverelay` word, subcommand word, --options...) for each command line in code."""
    found = set()
    for match in re.finditer(r"(?:^|`|/bin/)liverelay ((?:[a-z][a-z0-9-]* ?)+)((?:[^`\n|;&]*))", text, re.M):
        words = match.group(1).split()
        options = re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", match.group(2) + " " + " ".join(words))
        found.add((*words[:2], *sorted(set(options))))
    return found


def _command_params(command: click.Command) -> set[str]:
    return {opt for param in command.params for opt in param.opts if opt.startswith("--")}


def test_docs_name_only_commands_and_options_that_exist() -> None:
    commands = _commands_in(DOCS.read_text()) | _commands_in(UNIT.read_text())
    assert ("db", "upgrade") in {c[:2] for c in commands} and ("config", "show") in {c[:2] for c in commands}
    ctx = click.Context(cli)
    pending = pending_commands()
    for entry in sorted(commands):
        words = [w for w in entry if not w.startswith("--")]
        options = {w for w in entry if w.startswith("--")}
        if tuple(words[:2]) in pending:
            continue
        command = cli.get_command(ctx, words[0])
        assert command is not None, f"`liverelay {words[0]}` does not exist ({entry})"
        if isinstance(command, click.Group):
            assert len(words) > 1, entry
            sub = command.get_command(ctx, words[1])
            assert sub is not None, f"`liverelay {words[0]} {words[1]}` does not exist"
            command = sub
        unknown = options - _command_params(command)
        assert not unknown, f"`liverelay {' '.join(words)}` has no option {sorted(unknown)}"


# -- the Dockerfile ----------------------------------------------------------------------------


def test_dockerfile_is_a_debian_slim_image_of_liverelay_serve() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text())
    unknown = {i.keyword for i in instructions} - DOCKER_INSTRUCTIONS
    assert not unknown, f"not Dockerfile instructions: {unknown}"
    bases = [i.args.split()[0] for i in instructions if i.keyword == "FROM"]
    assert bases and all(re.search(r"(bookworm-slim|slim-bookworm)$", b) for b in bases), (
        bases
    )  # Debian 12 slim
    final_stage = max(n for n, i in enumerate(instructions) if i.keyword == "FROM")
    final = instructions[final_stage:]
    assert final[0].args == "python:3.11-slim-bookworm", final[0]
    runs = " ".join(i.args for i in final if i.keyword == "RUN")
    assert re.search(r"apt-get install [^&]*\bffmpeg\b", runs), "ffmpeg from Debian"
    build_runs = " ".join(i.args for i in instructions[:final_stage] if i.keyword == "RUN")
    assert "pip install" in build_runs

    users = [i.args for i in final if i.keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), users
    assert re.search(rf"useradd [^&]*\b{users[-1]}\b", runs), "the user is created in the image"
    assert json.loads(next(i.args for i in final if i.keyword == "CMD")) == ["liverelay", "serve"]
    assert next(i.args for i in final if i.keyword == "STOPSIGNAL") == "SIGTERM"

    env: dict[str, str] = {}
    for i in final:
        if i.keyword == "ENV":
            env.update(env_pairs(i.args))
    liverelay_env = {k: v for k, v in env.items() if k.startswith("LIVERELAY_")}
    assert set(liverelay_env) <= known_env_vars(), set(liverelay_env) - known_env_vars()
    settings = load_settings(env=liverelay_env)
    volumes = [json.loads(i.args) for i in final if i.keyword == "VOLUME"]
    assert volumes == [[str(settings.data_dir)]], volumes
    listens = (settings.api.listen, settings.media.http_listen, settings.media.rtmp_listen)
    assert all(addr.startswith("0.0.0.0:") for addr in listens), listens
    exposed = {p for i in final if i.keyword == "EXPOSE" for p in i.args.split()}
    assert exposed == {addr.rsplit(":", 1)[1] + "/tcp" for addr in listens}, exposed
    # The console's players: the npm packages of VENDOR_FILES, copied to the vendor dir.
    packages = json.loads((REPO / "package.json").read_text())["dependencies"]
    assert {rel.split("/", 1)[0] for rel in VENDOR_FILES.values()} <= set(packages)
    assert any(
        i.keyword == "COPY" and i.args.endswith(f"node_modules {settings.api.console_vendor_dir}")
        for i in final
    )
    # The build context's files the Dockerfile copies exist, and .dockerignore keeps them in.
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip()}
    assert {".venv", "node_modules", ".git"} <= ignored
    for i in instructions:
        if i.keyword == "COPY" and not i.args.startswith("--from"):
            for source in i.args.split()[:-1]:
                assert (REPO / source).exists(), source
                assert source not in ignored, source


def test_readme_points_to_the_deploy_guide() -> None:
    assert "(docs/deploy.md)" in (REPO / "README.md").read_text()
