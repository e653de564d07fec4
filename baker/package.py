"""The .deb of the app: the first stage, and the first input of the recipe hash.

Reproducible on purpose: the same commit gives the same bytes, so a rebuild of an already baked
commit finds the same recipe and reuses its AMI. Because it is, a bake reuses the .deb already in
its build folder when a digest of everything that goes into it (the source tree, the settings,
the version, the commit time, baker's packaging code and templates, dpkg-deb) is the one recorded
beside it and its bytes still have the recorded sha256: a cache-hit bake builds nothing.

Everything that could differ between two builds is pinned: file times are clamped to the commit
time (SOURCE_DATE_EPOCH), owners are root:root, modes are 0755/0644, dpkg-deb sorts members and
compresses single-threaded, and the package tree is assembled from scratch in a temporary
directory. Only the finished file is moved into the output directory, so bad input or a failing
dpkg-deb leaves nothing behind.

Layout of the package (names from baker.yml's app.deb):

    <prefix>/                         the app source (default prefix /opt/<package>)
    <prefix>/VERSION                  the package version, for the app's /version
    /lib/systemd/system/<service>.service
    <env_file>                        conffile, from <source>/<env_defaults> (default /etc/default/<package>)
                                      (the unit also reads <runtime_env_file>, written at first boot
                                      from the environment's runtime:, default /etc/<package>/runtime.env)
    /usr/share/doc/<package>/         README (what is where), copyright, changelog.gz
    DEBIAN/                           control, conffiles, md5sums, postinst, prerm, postrm
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import hashlib
import io
import json
import logging
import os
import re
import shlex
import shutil
import stat
import tempfile
from dataclasses import dataclass
from email.utils import format_datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from baker import envfile, runner
from baker.errors import UsageError
from baker.layout import PROJECT_FILE
from baker.version import DEB_VERSION, GitState, derive

if TYPE_CHECKING:  # the reuse check (a cache-hit bake) runs on plain data, without the models
    from baker.config import DebSettings, Project

log = logging.getLogger("baker")

TEMPLATES = Path(__file__).parent / "deb"
#: never packaged: bytecode written by running the app, version control
_SKIP_NAMES = {"__pycache__", ".git"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
_UNIT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_ABS_PATH = re.compile(r"^(/[A-Za-z0-9._+-]+)+$")
_TOKEN = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Package:
    """A built .deb, as the later stages and the ledger see it."""

    path: Path
    package: str
    version: str
    sha256: str
    git_sha: str | None
    built_at: str
    architecture: str = "all"
    size: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "package": self.package,
            "version": self.version,
            "sha256": self.sha256,
            "git_sha": self.git_sha,
            "built_at": self.built_at,
            "architecture": self.architecture,
            "size": self.size,
        }


@dataclass(frozen=True)
class Spec:
    """What the .deb is made from, as plain data: enough to tell whether the .deb already built
    is still the one these inputs make (kept in a bake's receipt, baker/receipt.py)."""

    source: Path
    #: app.deb as JSON
    settings: dict[str, Any]
    #: app.deb.env_defaults was given explicitly (then its file must exist)
    env_defaults_set: bool
    base_version: str
    #: the paths whose changes make the version dirty
    version_inputs: tuple[Path, ...]

    @classmethod
    def of(cls, project: Project) -> Spec:
        source = source_dir(project)
        deb = project.app.deb
        return cls(
            source=source,
            settings=deb.model_dump(mode="json"),
            env_defaults_set="env_defaults" in deb.model_fields_set,
            base_version=project.app.base_version,
            version_inputs=(source, project.root / PROJECT_FILE),
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source),
            "settings": self.settings,
            "env_defaults_set": self.env_defaults_set,
            "base_version": self.base_version,
            "version_inputs": [str(p) for p in self.version_inputs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Spec:
        return cls(
            source=Path(data["source"]),
            settings=dict(data["settings"]),
            env_defaults_set=bool(data["env_defaults_set"]),
            base_version=str(data["base_version"]),
            version_inputs=tuple(Path(p) for p in data["version_inputs"]),
        )


@dataclass(frozen=True)
class Plan:
    """The .deb these inputs make now: its version, commit, file name and inputs digest."""

    spec: Spec
    version: str
    epoch: int
    git: GitState | None
    env_defaults: Path | None
    #: ``<package>_<version>_<architecture>.deb``
    name: str
    #: the digest of its inputs ("" when reuse was not asked for)
    inputs: str


def plan(spec: Spec, *, allow_dirty: bool = False, reuse: bool = True) -> Plan:
    """Version, commit time and (with ``reuse``) the inputs digest of the .deb ``spec`` makes now."""
    settings = spec.settings
    env_defaults = _env_defaults(spec.source, settings["env_defaults"], explicit=spec.env_defaults_set)
    found = derive(spec.base_version, spec.source, list(spec.version_inputs), allow_dirty=allow_dirty)
    version = found.version
    if not DEB_VERSION.match(version):
        raise UsageError(f"version {version!r} is not a valid Debian version", details={"version": version})
    epoch = _source_date_epoch(found.git, spec.source)
    log.info(
        "packaging %s %s from %s",
        settings["package"],
        version,
        found.git.sha[:12] if found.git else spec.source,
    )
    inputs = (
        _inputs_digest(spec.source, settings, version, epoch, env_defaults=env_defaults, git=found.git)
        if reuse
        else ""
    )
    name = f"{settings['package']}_{version}_{settings['architecture']}.deb"
    return Plan(spec, version, epoch, found.git, env_defaults, name, inputs)


def reused(made: Plan, out_dir: Path) -> Package | None:
    """The .deb in ``out_dir`` when it was built from ``made``'s inputs and its bytes are still the
    ones recorded beside it; None when it must be built."""
    final = out_dir / made.name
    found = _reusable(final, out_dir / f".{made.name}.inputs", made.inputs) if made.inputs else None
    if found is None:
        return None
    log.info("%s: inputs unchanged, reused", final)
    digest, size = found
    return _package(final, made.spec.settings, made.version, digest, made.git, size)


def build(project: Project, out_dir: Path, *, allow_dirty: bool = False, reuse: bool = False) -> Package:
    """Build the app's .deb from what is checked out and move it into ``out_dir``.

    ``reuse``: keep the .deb already there when it was built from the same inputs (recorded in a
    file beside it); ``baker package`` always builds."""
    deb = project.app.deb
    spec = Spec.of(project)
    check_settings(deb)
    made = plan(spec, allow_dirty=allow_dirty, reuse=reuse)
    source, version, epoch, git = made.spec.source, made.version, made.epoch, made.git
    if (kept := reused(made, out_dir)) is not None:
        return kept

    name, inputs = made.name, made.inputs
    final = out_dir / name
    record = out_dir / f".{name}.inputs"
    with tempfile.TemporaryDirectory(prefix="baker-package-") as tmp:
        tree = Path(tmp) / "tree"
        try:
            assemble(tree, source, deb, version, epoch, env_defaults=made.env_defaults, git=git)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise UsageError(
                f"cannot package the app source (app.source){where}: {exc.strerror or exc}"
            ) from exc
        built = Path(tmp) / name
        runner.run(
            dpkg_deb_argv(tree, built),
            env={**os.environ, "SOURCE_DATE_EPOCH": str(epoch)},
            stage="dpkg-deb",
            echo=False,
            timeout=600,
        )
        digest = _sha256(built)
        size = built.stat().st_size
        partial = out_dir / f".{name}.partial"
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built, partial)
            partial.chmod(0o644)
            os.replace(partial, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                partial.unlink()
            raise UsageError(f"cannot write the package into {out_dir}: {exc.strerror or exc}") from exc
    if not inputs:
        return _package(final, made.spec.settings, version, digest, git, size)
    try:
        record.write_text(json.dumps({"inputs": inputs, "sha256": digest, "size": size}) + "\n")
    except OSError as exc:  # the .deb is there; the next build only cannot reuse it
        log.warning("cannot record the inputs of %s in %s: %s", final, record, exc.strerror or exc)
    return _package(final, made.spec.settings, version, digest, git, size)


def _package(
    path: Path, deb: dict[str, Any], version: str, digest: str, git: GitState | None, size: int
) -> Package:
    return Package(
        path=path.resolve(),
        package=deb["package"],
        version=version,
        sha256=digest,
        git_sha=git.sha if git else None,
        built_at=dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat(),
        architecture=deb["architecture"],
        size=size,
    )


#: what the package is made by besides its inputs: a change to any of them makes a new .deb
_MAKERS = (Path(__file__), Path(envfile.__file__), *sorted(TEMPLATES.iterdir()))


def _inputs_digest(
    source: Path,
    deb: dict[str, Any],
    version: str,
    epoch: int,
    *,
    env_defaults: Path | None,
    git: GitState | None,
) -> str:
    """A digest of everything the .deb is made of: every entry of the source tree (path, mode,
    content or link target), the settings, version, commit time and commit, baker's packaging code
    and templates, and which dpkg-deb builds it. More than the package holds is fine: it only
    costs a rebuild."""
    h = hashlib.sha256(b"baker-deb-inputs-v1\0")

    def part(name: str, data: bytes) -> None:
        h.update(f"{name}\0{len(data)}\0".encode())
        h.update(data)

    part("settings", json.dumps(deb, sort_keys=True).encode())
    part("build", json.dumps([version, epoch, git.sha if git else None]).encode())
    dpkg_deb = Path(runner.which("dpkg-deb")).resolve()
    st = dpkg_deb.stat()
    part("dpkg-deb", f"{dpkg_deb}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode())
    for maker in _MAKERS:
        part(f"maker:{maker.name}", maker.read_bytes())
    if env_defaults is not None:
        part("env-defaults", env_defaults.read_bytes())
    for dirpath, dirnames, filenames in os.walk(source):
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted([*dirnames, *filenames]):
            path = here / name
            info = path.lstat()
            rel = path.relative_to(source).as_posix()
            part("entry", f"{rel}\0{info.st_mode:o}".encode())
            if stat.S_ISLNK(info.st_mode):
                part("link", os.readlink(path).encode())
            elif stat.S_ISREG(info.st_mode):
                part("file", path.read_bytes())
    return h.hexdigest()


def _reusable(deb: Path, record: Path, inputs: str) -> tuple[str, int] | None:
    """(sha256, size) of the .deb already built from these inputs, when its bytes are still the
    ones recorded; None otherwise."""
    try:
        known = json.loads(record.read_text())
        if known.get("inputs") != inputs or deb.stat().st_size != known["size"]:
            return None
        digest = _sha256(deb)
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return (digest, int(known["size"])) if digest == known["sha256"] else None


def dpkg_deb_argv(tree: Path, target: Path) -> list[str]:
    """dpkg-deb as reproducibility needs it: root:root owners, xz in one thread (same blocks anywhere)."""
    return [
        "dpkg-deb",
        "--root-owner-group",
        "-Zxz",
        "-z6",
        "--threads-max=1",
        "--build",
        str(tree),
        str(target),
    ]


def source_dir(project: Project) -> Path:
    """The app source: a directory inside the project (a path outside it, say ``../..``, would
    package whatever happens to be there)."""
    app = project.app
    source = project.path(app.source)
    try:
        inside = source.resolve().is_relative_to(project.root.resolve())
        found = source.is_dir()
    except OSError as exc:
        raise UsageError(f"baker.yml: app.source: {exc.strerror}", details={"key": "app.source"}) from None
    if not inside:
        raise UsageError(
            f"baker.yml: app.source: {app.source}: must be a directory inside the project ({project.root})",
            details={"key": "app.source"},
        )
    if not found:
        raise UsageError(
            f"baker.yml: app.source: {app.source}: no such directory ({source})",
            details={"key": "app.source"},
        )
    return source


#: a dependency as dpkg reads it: name[:arch] [(op version)] [[arches]] [<profiles>], alternatives with |
_RELATION = re.compile(
    r"^[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?(\s*\((<<|<=|=|>=|>>)\s*[A-Za-z0-9.+~:-]+\))?"
    r"(\s*\[[a-z0-9!\s-]+\])?(\s*<[a-z0-9!.\s-]+>)*$"
)
_NAME_MAX = 200  # keeps <package>_<version>_<arch>.deb and <service>.service under 255 bytes


def check_settings(deb: DebSettings) -> None:
    """What baker.yml's model cannot see alone: names and paths that land in shell scripts and units."""
    problems = []
    for key, value in (("package", deb.package), ("service", deb.service)):
        if len(value) > _NAME_MAX:
            problems.append(f"app.deb.{key}: {len(value)} characters; at most {_NAME_MAX}")
    if not _USER.match(deb.user):
        problems.append(f"app.deb.user: {deb.user!r} is not a valid system user name")
    if not _UNIT.match(deb.service):
        problems.append(f"app.deb.service: {deb.service!r} is not a valid systemd unit name")
    for key, value in (
        ("prefix", deb.prefix),
        ("env_file", deb.env_file),
        ("runtime_env_file", deb.runtime_env_file),
    ):
        if not _ABS_PATH.match(value) or "/../" in f"{value}/" or "/./" in f"{value}/":
            problems.append(f"app.deb.{key}: {value!r} must be an absolute path without spaces or '..'")
    for key, value in (
        ("architecture", deb.architecture),
        ("section", deb.section),
        ("priority", deb.priority),
    ):
        if not _TOKEN.match(value) or len(value) > 64:
            problems.append(f"app.deb.{key}: {value[:64]!r} is not a valid control field value")
    if deb.homepage is not None and not re.match(r"^https?://[^\s<>]+$", deb.homepage):
        problems.append(f"app.deb.homepage: {deb.homepage[:80]!r} must be one http(s) URL")
    if not deb.description.strip() or "\n" in deb.description.strip():
        problems.append(f"app.deb.description: {deb.description!r} must be one non-empty line")
    for i, dep in enumerate(deb.depends):
        alternatives = [a.strip() for a in dep.split("|")]
        if not dep.strip() or any(c in dep for c in ",\n\r") or not all(map(_RELATION.match, alternatives)):
            problems.append(
                f"app.deb.depends[{i}]: {dep[:80]!r} must be one package relation, like "
                "'python3 (>= 3.11)' or 'a | b' (no commas)"
            )
    if not deb.exec_start.strip() or "\n" in deb.exec_start.strip():
        problems.append(f"app.deb.exec_start: {deb.exec_start!r} must be one command line")
    if problems:
        raise UsageError("baker.yml: " + "; ".join(problems), details={"problems": problems})


def assemble(
    tree: Path,
    source: Path,
    deb: DebSettings,
    version: str,
    epoch: int,
    *,
    env_defaults: Path | None,
    git: GitState | None,
) -> None:
    """Lay out the package tree with normalized modes and times."""
    prefix = tree / deb.prefix.lstrip("/")
    _copy_app(source, prefix, skip={env_defaults} if env_defaults else set())
    _write(prefix / "VERSION", version + "\n")

    values = _values(deb, version, epoch, git, source)
    _write(tree / "lib/systemd/system" / f"{deb.service}.service", render("service.j2", values))
    env_text = (
        env_defaults.read_text()
        if env_defaults
        else envfile.render({}, header=f"settings of {deb.service}.service")
    )
    _write(tree / deb.env_file.lstrip("/"), env_text)
    doc = tree / "usr/share/doc" / deb.package
    _write(doc / "copyright", render("copyright.j2", values))
    _write(doc / "README", render("README.j2", values))
    _write_bytes(doc / "changelog.gz", _gzip(render("changelog.j2", values).encode()))
    _write(tree / "usr/share/lintian/overrides" / deb.package, render("lintian-overrides.j2", values))

    control_dir = tree / "DEBIAN"
    for script in ("postinst", "prerm", "postrm"):
        _write(control_dir / script, render(f"{script}.j2", values), mode=0o755)
    conffiles = ["/" + deb.env_file.lstrip("/")]
    _write(control_dir / "conffiles", "".join(f"{c}\n" for c in conffiles))
    _write(control_dir / "md5sums", _md5sums(tree, exclude=set(conffiles)))
    _write(control_dir / "control", control(deb, version, installed_size_kib(tree)))
    _normalize(tree, epoch)


def control(deb: DebSettings, version: str, installed_size: int) -> str:
    """The control file; Depends gains what the maintainer scripts use (adduser)."""
    depends = list(deb.depends)
    if not any(re.match(r"^adduser\b", d.strip()) for d in depends):
        depends.append("adduser")
    long = deb.long_description.strip("\n") or deb.description
    body = "\n".join(f" {line.rstrip()}" if line.strip() else " ." for line in long.splitlines())
    fields = [
        ("Package", deb.package),
        ("Version", version),
        ("Architecture", deb.architecture),
        ("Maintainer", deb.maintainer),
        ("Installed-Size", str(installed_size)),
        ("Depends", ", ".join(d.strip() for d in depends)),
        ("Section", deb.section),
        ("Priority", deb.priority),
    ]
    if deb.homepage:
        fields.append(("Homepage", deb.homepage))
    text = "".join(f"{k}: {v}\n" for k, v in fields)
    return text + f"Description: {deb.description.strip()}\n{body}\n"


def installed_size_kib(tree: Path) -> int:
    """Installed-Size as dpkg-gencontrol counts it: KiB per file, rounded up; 1 per directory or link."""
    total = 0
    for path in tree.rglob("*"):
        if path.relative_to(tree).parts[0] == "DEBIAN":
            continue
        if path.is_file() and not path.is_symlink():
            total += (path.stat().st_size + 1023) // 1024
        else:
            total += 1
    return total


def render(template: str, values: dict[str, Any]) -> str:
    import jinja2  # only when the .deb is built: a reused one needs no template

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - shell scripts and unit files, not HTML; values go through |sh
    )
    env.filters["sh"] = lambda v: shlex.quote(str(v))
    return env.get_template(template).render(**values)


def exec_start(deb: DebSettings, source: Path) -> str:
    """app.deb.exec_start with words naming a file of the app source made absolute under the prefix."""
    words = deb.exec_start.split()

    def in_source(word: str) -> bool:
        try:
            return not word.startswith("/") and (source / word).is_file()
        except OSError:  # e.g. a word longer than a file name can be
            return False

    return " ".join(f"{deb.prefix}/{w}" if in_source(w) else w for w in words)


def _values(deb: DebSettings, version: str, epoch: int, git: GitState | None, source: Path) -> dict[str, Any]:
    when = dt.datetime.fromtimestamp(epoch, dt.UTC)
    return {
        "package": deb.package,
        "version": version,
        "service": deb.service,
        "user": deb.user,
        "prefix": deb.prefix,
        "env_file": deb.env_file,
        "runtime_env_file": deb.runtime_env_file,
        "description": deb.description.strip(),
        "maintainer": deb.maintainer,
        "exec_start": exec_start(deb, source),
        "origin": f"git commit {git.sha}" if git else "a source tree without git",
        "date": format_datetime(when),
        "year": when.year,
    }


def _env_defaults(source: Path, name: str, *, explicit: bool) -> Path | None:
    """The app's default environment file; when app.deb.env_defaults is set explicitly it must exist."""
    path = source / name
    try:
        if path.is_file():
            return path
    except OSError:
        pass  # a name no file can have: missing, as below
    if explicit:
        raise UsageError(
            f"baker.yml: app.deb.env_defaults: {name}: no such file in {source}",
            details={"key": "app.deb.env_defaults"},
        )
    return None


def _source_date_epoch(git: GitState | None, source: Path) -> int:
    """The commit time; without git, $SOURCE_DATE_EPOCH or the newest source file."""
    if git is not None:
        return git.commit_time
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    if env.isdigit():
        return int(env)
    times = [int(p.stat().st_mtime) for p in source.rglob("*") if p.is_file()]
    return max(times, default=0)


def _copy_app(source: Path, prefix: Path, *, skip: set[Path]) -> None:
    for dirpath, dirnames, filenames in os.walk(source):
        here = Path(dirpath)
        target = prefix / here.relative_to(source)
        target.mkdir(parents=True, exist_ok=True)
        for name in [d for d in dirnames if (here / d).is_symlink()]:
            os.symlink(os.readlink(here / name), target / name)  # shipped as the link it is
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_NAMES and not (here / d).is_symlink())
        for name in sorted(filenames):
            src = here / name
            if name in _SKIP_NAMES or name.endswith(_SKIP_SUFFIXES) or src in skip:
                continue
            dst = target / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dst)
            else:
                shutil.copyfile(src, dst)
                dst.chmod(0o755 if src.stat().st_mode & stat.S_IXUSR else 0o644)


def _write(path: Path, text: str, *, mode: int = 0o644) -> None:
    _write_bytes(path, text.encode(), mode=mode)


def _write_bytes(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)


def _gzip(data: bytes) -> bytes:
    """gzip without a name or timestamp in the header, so the bytes depend on the content only."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=9, mtime=0) as f:
        f.write(data)
    return buf.getvalue()


def _md5sums(tree: Path, *, exclude: set[str]) -> str:
    lines = []
    for path in sorted(tree.rglob("*")):
        rel = path.relative_to(tree)
        if rel.parts[0] == "DEBIAN" or not path.is_file() or path.is_symlink() or f"/{rel}" in exclude:
            continue
        lines.append(f"{hashlib.md5(path.read_bytes()).hexdigest()}  {rel}\n")  # noqa: S324 - dpkg's format
    return "".join(lines)


def _normalize(tree: Path, epoch: int) -> None:
    """Directories 0755 and every mtime clamped to the commit time, deepest first."""
    for dirpath, dirnames, filenames in os.walk(tree, topdown=False):
        here = Path(dirpath)
        for name in filenames:
            os.utime(here / name, (epoch, epoch), follow_symlinks=False)
        for name in dirnames:
            p = here / name
            if not p.is_symlink():
                p.chmod(0o755)
            os.utime(p, (epoch, epoch), follow_symlinks=False)
    tree.chmod(0o755)
    os.utime(tree, (epoch, epoch))


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
