"""What README.md and loadtest/README.md say, held against the code they describe.

The command-line table against the CLI's parser, the configuration table against every environment name the
settings read, the dashboard's file count against its directory, the Markdown tables' shape, the load tests' peers
directory against loadtest/common.py; and the Quick start's socket examples run for real against a hub started as
the README starts it, which is then stopped with Ctrl-C (SIGINT) as the README says it exits."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hub.cli import build_parser
from hub.settings import setting_names
from tests.jsclient import JS_DIR, require_node
from tests.services import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
LOADTEST_README = ROOT / "loadtest" / "README.md"
NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def section(text: str, title: str) -> str:
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def code_block(text: str, after: str, language: str) -> str:
    start = text.index(f"```{language}\n", text.index(after)) + len(language) + 4
    return text[start : text.index("```", start)]


# --- the command line -------------------------------------------------------------------------------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [sub] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def test_the_command_line_table_has_every_command_and_option() -> None:
    """Each option of each command (``--help`` of every one) is in the table, in a row of that command."""
    table = section(README.read_text(), "Command line")
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    missing = []
    for name, parser in _subcommands().items():
        usage = " ".join(row.split(" | ")[0] for row in rows if row.startswith(f"| `{name} ") or row == f"| `{name}`")
        assert usage, f"no row for `{name}`"
        for action in parser._actions:
            options = [o for o in action.option_strings if o.startswith("--") and o != "--help"]
            if action.option_strings and not options:
                continue  # -h
            if not action.option_strings:
                if action.metavar or action.dest:
                    word = (action.metavar or action.dest).upper()
                    if word not in usage.upper():
                        missing.append(f"{name} {word}")
                continue
            missing += [f"{name} {o}" for o in options if not re.search(rf"{re.escape(o)}\b", usage)]
    assert missing == []


def test_every_environment_name_is_in_the_configuration_table() -> None:
    """The settings accept the old gateway's names too (PORT, LOG_LEVEL, ...): every one of them is documented,
    not only the CARTSNITCH_ name."""
    table = section(README.read_text(), "Configuration")
    aliases = [name for names in setting_names().values() for name in names[1:]]
    assert {"PORT", "LOG_LEVEL", "DATABASE_URL"} <= set(aliases)
    rows = {names[0]: names[1:] for names in setting_names().values() if len(names) > 1}
    undocumented = []
    for first, others in rows.items():
        [row] = [line for line in table.splitlines() if line.startswith("| ") and f"`{first}`" in line]
        undocumented += [name for name in others if f"`{name}`" not in row]
    assert undocumented == []


# --- the dashboard, the tables ----------------------------------------------------------------------------------


def test_the_dashboard_is_as_many_files_as_the_readme_says() -> None:
    files = sorted(p.name for p in (ROOT / "rest" / "static" / "dashboard").iterdir() if p.is_file())
    text = section(README.read_text(), "Public dashboard")
    said = re.search(r"It is (\w+) static\s+files", text)
    assert said and said.group(1) == NUMBERS[len(files)], (said and said.group(1), files)
    for name in files:
        assert f"`{name}`" in text, name


@pytest.mark.parametrize("path", [README, LOADTEST_README], ids=["README", "loadtest-README"])
def test_no_markdown_table_is_split_by_a_blank_line(path: Path) -> None:
    """A blank line between two rows ends the table: the rows after it render as a paragraph of pipes."""
    lines = path.read_text().splitlines()
    for i in range(1, len(lines) - 1):
        if lines[i].strip() == "" and lines[i - 1].startswith("|") and lines[i + 1].startswith("|"):
            is_new_table = i + 2 < len(lines) and re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", lines[i + 2].strip())
            assert is_new_table, f"{path.name}:{i + 1}: a blank line splits a table"


def test_the_load_tests_peers_directory_is_what_the_readme_says() -> None:
    """CARTSNITCH_PEERS_DIR is where the reference servers are copied and installed, not where their source is."""
    common = (ROOT / "loadtest" / "common.py").read_text()
    default = re.search(r'os\.environ\.get\("CARTSNITCH_PEERS_DIR", ROOT / "loadtest" / "(\.\w+)"\)', common)
    assert default, "loadtest/common.py no longer reads CARTSNITCH_PEERS_DIR as this test knows"
    assert 'source = ROOT.parent / "shared" / "peers"' in common and "shutil.copytree(source, PEERS)" in common
    text = LOADTEST_README.read_text()
    paragraph = " ".join(text[: text.index("\n\n", text.index("CARTSNITCH_PEERS_DIR"))].split())
    assert f"`loadtest/{default.group(1)}`" in paragraph and "`../shared/peers`" in paragraph
    assert "`CARTSNITCH_PEERS_DIR` names another directory for that installed copy" in paragraph
    assert "it does not change where the source comes from" in paragraph


# --- the Quick start for real -----------------------------------------------------------------------------------


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    url: str
    token: str
    user_id: str


def _wait_for(what: str, check: Callable[[], Any], seconds: float) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    pytest.fail(f"no {what} within {seconds:g} s")


def _request(method: str, url: str, token: str | None = None, body: dict[str, Any] | None = None) -> Any:
    headers = {"content-type": "application/json"} | ({"authorization": f"Bearer {token}"} if token else {})
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310 (loopback)
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())


@contextlib.contextmanager
def serving(cwd: Path) -> Iterator[Served]:
    """`cartsnitch-hub serve` with no settings (the embedded default) in an empty directory, as the README runs it."""
    names = {name for names in setting_names().values() for name in names}
    env = {k: v for k, v in os.environ.items() if k not in names and not k.startswith("CARTSNITCH_")}
    port = free_port()
    out = cwd / "stdout"
    with out.open("wb") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-m", "hub", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=cwd,
            env=env,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
        )
    try:
        printed = _wait_for("dashboard line", lambda: "dashboard:" in out.read_text() and out.read_text(), 90)
        login = re.search(r"^demo login: (\S+) / (\S+)", printed, re.MULTILINE)
        assert login, printed
        url = f"http://127.0.0.1:{port}"
        token = _request("POST", url + "/auth/login", body={"email": login[1], "password": login[2]})["access_token"]
        user_id = _request("GET", url + "/auth/me", token)["id"]
        yield Served(process, url, token, user_id)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("serve")) as hub:
        yield hub


def _user_sockets(url: str) -> float:
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:  # noqa: S310 (loopback)
        text = response.read().decode()
    found = re.search(r'^hub_socket_connections\{namespace="user"\} (\S+)$', text, re.MULTILINE)
    return float(found[1]) if found else 0.0


def _sees_a_demo_sync(served: Served, command: list[str], tmp_path: Path) -> list[str]:
    """Start the example, wait until its user socket is open, run a demo sync, return what it printed."""
    before = _user_sockets(served.url)
    out = tmp_path / "example.out"
    with out.open("wb") as stdout:
        example = subprocess.Popen(command, cwd=tmp_path, stdout=stdout, stderr=subprocess.STDOUT)
    try:
        _wait_for("user socket", lambda: _user_sockets(served.url) > before or example.poll() is not None, 30)
        assert example.poll() is None, out.read_text()
        _request("POST", served.url + "/api/v1/scraping/kroger/sync", served.token)
        _wait_for("succeeded sync", lambda: "succeeded" in out.read_text() or example.poll() is not None, 60)
    finally:
        example.kill()
        example.wait(timeout=10)
    return out.read_text().splitlines()


def test_the_quick_starts_python_socket_example_prints_a_demo_syncs_progress(served: Served, tmp_path: Path) -> None:
    quick_start = section(README.read_text(), "Quick start")
    code = code_block(quick_start, "The same events arrive live", "python")
    call = 'asyncio.run(main("http://127.0.0.1:8000", "<access token>", "<user id>"))'
    assert call in code
    code = code.replace(call, f"asyncio.run(main({served.url!r}, {served.token!r}, {served.user_id!r}))")
    lines = _sees_a_demo_sync(served, [sys.executable, "-c", code], tmp_path)
    statuses = [line.split()[-1] for line in lines if " kroger " in line]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded", lines
    assert all(re.fullmatch(r"\d+-\d+-\w+ kroger \w+", line) for line in lines if " kroger " in line), lines


def test_the_quick_starts_javascript_socket_example_prints_a_demo_syncs_progress(
    served: Served, tmp_path: Path
) -> None:
    node = require_node()
    code = code_block(section(README.read_text(), "Quick start"), "official JavaScript client", "js")
    (tmp_path / "node_modules").symlink_to(JS_DIR / "node_modules")
    script = tmp_path / "example.mjs"
    script.write_text("const [url, token, userId] = process.argv.slice(2);\n" + code)
    lines = _sees_a_demo_sync(served, [node, str(script), served.url, served.token, served.user_id], tmp_path)
    statuses = [line.split()[-1] for line in lines if re.fullmatch(r"\d+-\d+-\w+ \w+", line)]
    assert statuses[0] == "queued" and statuses[-1] == "succeeded", lines


def test_the_readme_says_what_ctrl_c_does() -> None:
    """Ctrl-C during start-up is 130, on a serve that listens a drain and 0: tests/hub/test_serve.py checks both."""
    text = " ".join(section(README.read_text(), "Command line").split())
    assert "Ctrl-C (SIGINT) exits 130 from every command except a `serve` that already listens" in text
    assert re.search(r"takes SIGINT as it takes SIGTERM, drains \(.*?\) and exits 0\.", text)
