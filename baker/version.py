"""The .deb version of a commit, derived from git so that CI never has to be told a version.

The scheme, chosen so that ``dpkg --compare-versions`` orders builds the way people expect
(``~`` sorts before anything, even the end of the string; ``+`` after it):

    HEAD tagged v1.2.3                     -> 1.2.3
    N commits after v1.2.3                 -> 1.2.3+N.g<sha7>
    HEAD tagged v2.0.0-rc1                 -> 2.0.0~rc1         (2.0.0~rc1 < 2.0.0)
    N commits after v2.0.0-rc1             -> 2.0.0~rc1+N.g<sha7>
    no v* tag yet, N commits in history    -> <base_version>~N.g<sha7>
    dirty work tree (--allow-dirty only)   -> 1.2.3+N.g<sha7>.dirty (N may be 0), <base>~N.g<sha7>.dirty
    no git at all                          -> <base_version> (and a warning)

Untagged builds use ``~`` on purpose: ``base_version`` names the release being worked towards, so
the builds before its tag are pre-releases of it and must sort *below* ``v<base_version>``
(``0.1.0~7.gabc1234 < 0.1.0``), and a later commit sorts above an earlier one because dpkg compares
the commit count numerically. A dirty build sorts just above the clean build of the same commit and
below the next commit (``1.2.3 < 1.2.3+0.gabc1234.dirty < 1.2.3+1.gdef5678``).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from baker import runner
from baker.errors import ToolError, UsageError

log = logging.getLogger("baker")

TAG_PATTERN = "v[0-9]*"
#: what Debian accepts as a version (without an epoch): app.base_version and every derived version
DEB_VERSION = re.compile(r"^[0-9][A-Za-z0-9.+~-]*$")
#: v1.2.3, v1.2, v2.0.0-rc1, v2.0.0rc.2, v1.0.0-beta ...; the pre-release words that mean "before"
_TAG = re.compile(r"^v(?P<upstream>\d+(?:\.\d+)*)(?:[-~.]?(?P<pre>(?:alpha|beta|rc|pre|dev)\.?\d*))?$")
#: files git may report as changed that never reach the package (bytecode written by running the app)
_NOT_INPUTS = (":(exclude,glob)**/__pycache__/**", ":(exclude,glob)**/*.pyc")


@dataclass(frozen=True)
class GitState:
    """What git says about the commit being packaged."""

    sha: str
    commit_time: int
    #: the nearest v* tag reachable from HEAD, or None
    tag: str | None
    #: commits since ``tag`` (or in the whole history when there is no tag)
    distance: int
    #: ``git status --porcelain`` lines of the package's inputs that differ from the commit
    changes: tuple[str, ...] = ()

    @property
    def dirty(self) -> bool:
        return bool(self.changes)

    @property
    def sha7(self) -> str:
        return self.sha[:7]


@dataclass(frozen=True)
class Version:
    version: str
    git: GitState | None


def tag_version(tag: str) -> str:
    """``v2.0.0-rc1`` -> ``2.0.0~rc1``. Other tag shapes are refused: guessing their order is worse."""
    m = _TAG.match(tag)
    if not m:
        raise UsageError(
            f"git tag {tag!r} is not a release version: use vMAJOR.MINOR.PATCH with an optional "
            "-alpha/-beta/-rc/-pre/-dev suffix (e.g. v1.2.3, v2.0.0-rc1)",
            details={"tag": tag},
        )
    pre = m.group("pre")
    return m.group("upstream") + (f"~{pre.replace('.', '')}" if pre else "")


def compose(base_version: str, git: GitState | None) -> str:
    """The version string for a git state; pure, so the scheme is tested without git."""
    if git is None:
        return base_version
    if git.tag is None:
        return f"{base_version}~{git.distance}.g{git.sha7}" + (".dirty" if git.dirty else "")
    version = tag_version(git.tag)
    # a dirty build names its commit even on the tag itself, so it sorts after the clean one
    if git.distance or git.dirty:
        version += f"+{git.distance}.g{git.sha7}"
    if git.dirty:
        version += ".dirty"
    return version


def git_state(repo: Path, inputs: list[Path]) -> GitState | None:
    """The commit of the repository holding ``repo``, or None when there is no git or no commit.

    ``inputs`` are the paths whose changes make the tree dirty:
    only what goes into the package counts, so build output or notes elsewhere never block a build.
    """
    try:
        runner.which("git")
    except UsageError:
        log.warning("git is not installed: the version comes from baker.yml (app.base_version)")
        return None
    # five git commands in all (a cache-hit bake runs this on every CI step): the top and whether
    # the clone is shallow; HEAD and its time; the nearest tag with its distance; the tags on that
    # tag's commit (or, with no tag, the length of the history); the package's changed inputs
    probe = runner.run(
        ["git", "-C", str(repo), "rev-parse", "--show-toplevel", "--is-shallow-repository"],
        check=False,
        capture=True,
        echo=False,
        timeout=60,
        stage="git",
    )
    if probe.returncode != 0:
        if "not a git repository" not in probe.output:
            # e.g. "detected dubious ownership": silently falling back would version every commit alike
            raise ToolError(
                f"git cannot read the repository of {repo}",
                tool="git",
                output_tail=probe.lines[-5:],
                returncode=probe.returncode,
            )
        log.warning(
            "%s is not in a git repository: the version comes from baker.yml (app.base_version)", repo
        )
        return None
    top, shallow = [*probe.output.strip().splitlines(), "", ""][:2]
    top_dir = Path(top)
    said = _git(top_dir, "log", "-1", "--format=%H %ct", "HEAD", check=False)
    if not said:
        log.warning("%s has no commit yet: the version comes from baker.yml (app.base_version)", top_dir)
        return None
    head, commit_time = said.split()
    if shallow == "true":
        log.warning(
            "%s is a shallow clone: tags and commit counts may be missing, so the version may not sort "
            "after earlier builds; fetch the history (git fetch --unshallow --tags)",
            top_dir,
        )
    tag, distance = _nearest_tag(top_dir, head)
    if tag is None:
        distance = int(_out(top_dir, "rev-list", "--count", head))
    rel = [_relative(p, top_dir) for p in inputs]
    status = _out(top_dir, "status", "--porcelain", "--untracked-files=all", "--", *rel, *_NOT_INPUTS)
    changes = tuple(line for line in status.splitlines() if line.strip())
    return GitState(sha=head, commit_time=int(commit_time), tag=tag, distance=distance, changes=changes)


def derive(base_version: str, repo: Path, inputs: list[Path], *, allow_dirty: bool = False) -> Version:
    """The version of what is checked out in ``repo``; a dirty tree is refused unless allowed."""
    git = git_state(repo, inputs)
    if git is not None and git.dirty and not allow_dirty:
        shown = "; ".join(git.changes[:5]) + (
            f"; and {len(git.changes) - 5} more" if len(git.changes) > 5 else ""
        )
        raise UsageError(
            f"uncommitted changes in what goes into the package ({shown}): commit them, "
            "or pass --allow-dirty to build a version marked .dirty",
            details={"dirty": list(git.changes)},
        )
    return Version(version=compose(base_version, git), git=git)


def _nearest_tag(top: Path, head: str) -> tuple[str | None, int]:
    """The nearest v* tag reachable from ``head`` and the commits since it (``describe --long``:
    ``<tag>-<count>-g<sha>``), or ``(None, 0)``."""
    described = _git(top, "describe", "--tags", "--long", f"--match={TAG_PATTERN}", head, check=False)
    found = re.fullmatch(r"(?P<tag>.+)-(?P<distance>\d+)-g[0-9a-f]+", described or "")
    if found is None:
        return None, 0
    name, distance = found["tag"], int(found["distance"])
    # Several tags on that commit (v2.0.0-rc1 promoted to v2.0.0): the highest version names it.
    on_commit = _out(top, "tag", "--list", TAG_PATTERN, "--points-at", f"{name}^{{commit}}").split()
    tags = [t for t in on_commit if _TAG.match(t)]
    best = tags[0] if tags else name  # a described tag of another shape is refused by tag_version
    for t in tags[1:]:
        if newer(tag_version(t), tag_version(best)):
            best = t
    return best, distance


def newer(a: str, b: str) -> bool:
    """``a > b`` under dpkg's own ordering (the authority the versions are designed for)."""
    result = runner.run(["dpkg", "--compare-versions", a, "gt", b], check=False, capture=True, echo=False)
    return result.returncode == 0


def _relative(path: Path, top: Path) -> str:
    """A pathspec for ``git -C top``: inputs outside the repository cannot make it dirty."""
    try:
        return str(path.resolve().relative_to(top.resolve())) or "."
    except ValueError:
        return str(path.resolve())


def _git(cwd: Path, *args: str, check: bool = True) -> str | None:
    """git's trimmed output, or None when it fails and ``check`` is off."""
    result = runner.run(
        ["git", "-C", str(cwd), *args], check=check, capture=True, echo=False, timeout=60, stage="git"
    )
    if result.returncode != 0:
        return None
    return result.output.strip()


def _out(cwd: Path, *args: str) -> str:
    out = _git(cwd, *args)
    assert out is not None
    return out
