"""The Dockerfile, docker-compose.yml and deploy/nginx.conf, checked without a Docker engine.

The Dockerfile is read instruction by instruction (continuation lines joined) into what the running container gets:
its user, working directory and environment, and which directories a RUN made the user own. From those the embedded
default (no settings at all) is followed to the files it writes, which must land where the user may write; the
application code must stay out of the user's reach, and out of the import path when the working directory is not.
nginx's proxied Host is replayed against the hub's own-origin check (``OriginPolicy``)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml

from hub.infra import devsecrets
from hub.infra.origins import OriginPolicy
from hub.settings import MIN_SECRET_LENGTH, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
NGINX = ROOT / "deploy" / "nginx.conf"


@dataclass
class Image:
    """What the last stage of a Dockerfile leaves to the container it runs."""

    user: str = "root"
    workdir: PurePosixPath = field(default_factory=lambda: PurePosixPath("/"))
    env: dict[str, str] = field(default_factory=dict)
    uids: dict[str, int] = field(default_factory=dict)
    """user name -> uid, from useradd."""
    owned: dict[PurePosixPath, str] = field(default_factory=dict)
    """directory -> the user a RUN gave it to (install -d -o, chown)."""
    copied_to: list[PurePosixPath] = field(default_factory=list)
    copy_owners: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, comments dropped and continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        whole = pending + line
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        out.append((keyword.upper(), arguments.strip()))
    assert not pending, "a continuation line ends the file"
    return out


def _env_pairs(arguments: str) -> dict[str, str]:
    words = shlex.split(arguments)
    if len(words) >= 2 and "=" not in words[0]:
        return {words[0]: " ".join(words[1:])}  # the legacy `ENV NAME value` form
    return dict(word.split("=", 1) for word in words)


def _owned_by(command: str) -> dict[PurePosixPath, str]:
    """Directories one RUN command gives to a user: `install -d --owner U DIR...` and `chown U[:G] DIR...`."""
    found: dict[PurePosixPath, str] = {}
    for part in re.split(r"&&|;|\|\|", command):
        words = shlex.split(part)
        if not words:
            continue
        if words[0] == "install" and ({"-d", "--directory"} & set(words)):
            owner, paths, skip = None, [], False
            for i, word in enumerate(words[1:], 1):
                if skip:
                    skip = False
                elif word in ("-o", "--owner"):
                    owner, skip = words[i + 1], True
                elif word.startswith("--owner="):
                    owner = word.split("=", 1)[1]
                elif word in ("-g", "--group", "-m", "--mode"):
                    skip = True
                elif not word.startswith("-"):
                    paths.append(word)
            if owner:
                found.update({PurePosixPath(p): owner for p in paths})
        elif words[0] == "chown":
            operands = [w for w in words[1:] if not w.startswith("-")]
            owner = operands[0].split(":")[0]
            found.update({PurePosixPath(p): owner for p in operands[1:]})
    return found


def read_image(text: str) -> Image:
    image = Image()
    for keyword, arguments in instructions(text):
        if keyword == "FROM":
            image = Image(uids=image.uids)  # a new stage starts from its base (users of earlier stages do not count)
        elif keyword == "USER":
            image.user = arguments.split(":")[0]
        elif keyword == "WORKDIR":
            image.workdir = image.workdir / arguments
        elif keyword == "ENV":
            image.env.update(_env_pairs(arguments))
        elif keyword == "RUN":
            image.runs.append(arguments)
            image.owned.update(_owned_by(arguments))
            for added in re.finditer(r"useradd\b([^&;]*)", arguments):
                words = shlex.split(added.group(1))
                uid = words[words.index("--uid") + 1] if "--uid" in words else words[words.index("-u") + 1]
                image.uids[words[-1]] = int(uid)
        elif keyword == "COPY":
            words = shlex.split(arguments)
            image.copy_owners += [w.split("=", 1)[1] for w in words if w.startswith("--chown=")]
            destination = [w for w in words if not w.startswith("--")][-1]
            image.copied_to.append(image.workdir / destination)
        elif keyword == "CMD":
            image.cmd = yaml.safe_load(arguments)
    return image


def _within(path: PurePosixPath, directory: PurePosixPath) -> bool:
    return path == directory or directory in path.parents


@pytest.fixture(scope="module")
def image() -> Image:
    return read_image(DOCKERFILE.read_text())


# --- the Dockerfile ---------------------------------------------------------------------------------------------


def test_the_image_runs_the_hub_as_uid_10001(image: Image) -> None:
    assert image.user not in ("root", "0")
    assert image.uids[image.user] == 10001  # the runAsUser of the Kubernetes manifests
    assert image.cmd == ["python", "-m", "hub"]


def test_the_embedded_default_writes_its_files_where_the_image_user_may(image: Image) -> None:
    """With no settings (`docker run` of the image alone) the hub creates its SQLite file and its dev-mode secrets
    beside each other, relative to the working directory: that directory must belong to the image's user (it used
    to be /app, owned by root: the hub exited 1, "cannot write the dev-mode secrets")."""
    settings = Settings.from_env(image.env)
    assert settings.dev_mode and settings.is_sqlite and settings.redis_url is None  # the embedded default
    database = PurePosixPath(settings.database_url.split("///", 1)[1])
    secrets = PurePosixPath(str(devsecrets.secrets_path(settings)))
    for relative in (database, secrets):
        assert not relative.is_absolute(), relative
        written = image.workdir / relative
        owner_dirs = [d for d, user in image.owned.items() if _within(written.parent, d)]
        assert owner_dirs, f"{written}: nothing in the Dockerfile gives {written.parent} to {image.user}"
        assert all(image.owned[d] in (image.user, str(image.uids[image.user])) for d in owner_dirs)


def test_the_code_stays_out_of_the_image_users_reach(image: Image) -> None:
    """The user owns its data directory and nothing else: no code is copied there or handed to it, and the writable
    working directory is not on the import path (``python -m`` would otherwise put it first)."""
    assert image.copy_owners == [], "COPY --chown gives the code to a user"
    for copied in image.copied_to:
        assert not any(_within(copied, d) for d in image.owned), f"{copied} is copied into the user's directory"
    for directory in image.owned:
        assert directory != PurePosixPath("/") and "site-packages" not in str(directory)
    assert not any(re.search(r"chown\s+(-\S+\s+)*-R", run) for run in image.runs), "a recursive chown"
    if any(_within(image.workdir, d) for d in image.owned):
        assert image.env.get("PYTHONSAFEPATH") == "1", "`python -m hub` would import from a writable directory"


def test_the_dockerfile_reader_sees_what_a_dockerfile_says() -> None:
    """The reader itself: the old Dockerfile (working directory /app, owned by root) is refused."""
    old = read_image(
        "FROM python:3.11-slim\n"
        "RUN groupadd --system --gid 10001 hub && useradd --system --uid 10001 --gid hub --home-dir /app hub\n"
        "WORKDIR /app\nCOPY hub ./hub\nUSER hub\nENV CARTSNITCH_HOST=0.0.0.0 CARTSNITCH_PORT=8000\n"
        'CMD ["python", "-m", "hub"]\n'
    )
    assert old.workdir == PurePosixPath("/app") and old.owned == {} and old.uids == {"hub": 10001}
    with pytest.raises(AssertionError, match="nothing in the Dockerfile gives /app to hub"):
        test_the_embedded_default_writes_its_files_where_the_image_user_may(old)
    chowned = read_image(
        'FROM x\nRUN useradd -u 5 app && chown -R app /srv\nWORKDIR /srv\nCOPY . .\nUSER app\nCMD ["run"]\n'
    )
    assert chowned.owned == {PurePosixPath("/srv"): "app"}
    with pytest.raises(AssertionError):
        test_the_code_stays_out_of_the_image_users_reach(chowned)


# --- docker-compose.yml -----------------------------------------------------------------------------------------


def test_compose_asks_for_secrets_as_long_as_the_settings_require() -> None:
    """The message compose prints for a missing key states the length the hub's settings check."""
    text = (ROOT / "docker-compose.yml").read_text()
    asked = re.findall(r"\$\{(CARTSNITCH_\w+):\?[^}]*?(\d+)\+ random characters", text)
    assert asked and {int(length) for _, length in asked} == {MIN_SECRET_LENGTH}, asked
    assert {name for name, _ in asked} == {"CARTSNITCH_JWT_SECRET_KEY", "CARTSNITCH_SERVICE_KEY"}


# --- deploy/nginx.conf ------------------------------------------------------------------------------------------


def _locations() -> list[str]:
    return re.findall(r"location [^{]+\{([^}]*)\}", NGINX.read_text())


def _proxied_host(directive_value: str, host_header: str) -> str:
    """The Host nginx sends upstream for a client's Host header, by the variable the directive uses."""
    values = {"$http_host": host_header, "$host": host_header.rsplit(":", 1)[0], "$proxy_host": "hub"}
    assert directive_value in values, directive_value
    return values[directive_value]


def test_nginx_passes_the_clients_host_with_its_port_to_the_hub() -> None:
    """The hub allows its own origin by comparing Origin with Host: $host drops the port, so a page the hub served
    through nginx on :8000 would be refused on its user namespace (403) and on cookie-authenticated changes."""
    locations = _locations()
    assert locations and all("proxy_pass" in body for body in locations)
    policy = OriginPolicy(())  # nothing listed: only the own-origin rule can allow the page
    for body in locations:
        [value] = re.findall(r"proxy_set_header\s+Host\s+(\S+);", body)
        assert value == "$http_host", f"proxy_set_header Host {value}: the hub sees no port"
        for page, host in (("http://localhost:8000", "localhost:8000"), ("https://hub.example", "hub.example")):
            assert policy.allows(page, _proxied_host(value, host)), (page, value)
    assert not policy.allows("http://localhost:8000", _proxied_host("$host", "localhost:8000"))  # the old config


def test_the_readme_says_where_the_images_data_lives_and_what_production_sets(image: Image) -> None:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n### Docker\n")
    docker = " ".join(text[start : text.index("\n#", start + 1)].split())
    settings = Settings.from_env(image.env)
    for name in (settings.database_url.split("///", 1)[1], str(devsecrets.secrets_path(settings))):
        assert f"`{name}`" in docker, name
    assert f"lives in `{image.workdir}`" in docker
    assert re.search(rf"docker run .*-v \S+:{re.escape(str(image.workdir))} cartsnitch-hub", docker)
    assert "uid 10001" in docker and "`CARTSNITCH_DATABASE_URL`" in docker and "`CARTSNITCH_REDIS_URL`" in docker
