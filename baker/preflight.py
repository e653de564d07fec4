"""What `render` and `bake` check before they package or call AWS: every file of the project they
will read exists, so a missing template is found in milliseconds, not after a .deb and an AWS call.

Each problem names the key that points at the file and the file that sets (or should set) the key.
"""

from __future__ import annotations

from pathlib import Path

from baker.config import PROJECT_FILE, Environment, Project
from baker.errors import ConfigError, UsageError
from baker.package import check_settings, source_dir

#: the project's Packer template, in ``paths.packer``
TEMPLATE = "ami.pkr.hcl.j2"
#: the vault password client script, relative to the Ansible tree (``paths.ansible``)
VAULT_CLIENT = "vault-pass-client.py"


def check_project_files(
    project: Project, env: Environment, *, terraform: bool = False
) -> list[tuple[Path, bool]]:
    """Raise one ConfigError listing every missing project file (``terraform``: the module too).
    Returns what it found: (path, is a directory) of each file and directory it checked."""
    paths = project.settings.paths
    baker_yml = project.root / PROJECT_FILE
    problems: list[str] = []
    found: list[tuple[Path, bool]] = []

    def need(key: str, relative: str, *, directory: bool, what: str, origin: Path = baker_yml) -> Path | None:
        """The path when it is there; else None and a problem."""
        path = project.path(relative)
        try:
            ok = path.is_dir() if directory else path.is_file()
        except (OSError, ValueError):  # a name no file can have (too long)
            ok = False
        if not ok:
            kind = "directory" if directory else "file"
            problems.append(f"{origin}: {key}: {what} {path} not found (no such {kind})")
            return None
        found.append((path, directory))
        return path

    source: Path | None = None
    try:
        source = source_dir(project)
        found.append((source, True))
    except UsageError as exc:
        problems.append(exc.message)
    if source is not None and "env_defaults" in project.app.deb.model_fields_set:
        need(
            "app.deb.env_defaults",
            str(source / project.app.deb.env_defaults),
            directory=False,
            what="environment defaults",
        )
    packer = need("paths.packer", paths.packer, directory=True, what="packer template directory")
    if packer is not None:
        need("paths.packer", str(packer / TEMPLATE), directory=False, what="packer template")
    ansible = need("paths.ansible", paths.ansible, directory=True, what="ansible directory")
    need("paths.playbook", paths.playbook, directory=False, what="playbook")
    if ansible is not None and env.settings.bake.layers is not None:
        layers = env.settings.bake.layers
        for layer, roles in (("base", layers.base.roles), ("app", layers.app.roles)):
            for role in roles:
                need(
                    f"bake.layers.{layer}.roles",
                    str(ansible / "roles" / role),
                    directory=True,
                    what=f"role {role!r}",
                    origin=env.origin("bake", "layers"),
                )
    if terraform:
        need("paths.terraform", paths.terraform, directory=True, what="Terraform module")

    bake = env.settings.bake
    if bake.vault_file:
        origin = env.origin("bake", "vault_file")
        need("bake.vault_file", bake.vault_file, directory=False, what="vault file", origin=origin)
        if bake.vault_password is None:
            problems.append(f"{origin}: bake.vault_password: required when bake.vault_file is set")
        if ansible is not None:
            need("paths.ansible", str(ansible / VAULT_CLIENT), directory=False, what="vault password client")
    if problems:
        raise ConfigError(
            problems[0] if len(problems) == 1 else "missing project files:\n  " + "\n  ".join(problems),
            details={"problems": problems},
        )
    check_settings(project.app.deb)
    return found
