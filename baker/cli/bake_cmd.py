"""baker bake -e ENV [--force] [--dry-run]."""

from __future__ import annotations

from typing import Any

import click

from baker.cli.app import App, complete_environment


def _text(r: dict[str, Any]) -> str:
    if r.get("dry_run"):
        verdict = "cache hit: " + str(r["ami_id"]) if r["cache_hit"] else "no AMI has this recipe yet"
        action = "would bake" if r["would_bake"] else "would not bake"
        return f"{r['template']}\n  recipe {r['recipe']}\n  {verdict}; {action}"
    how = "cached, not rebaked" if r["cached"] else "baked"
    others = ", ".join(f"{k}: {v}" for k, v in r.get("amis", {}).items() if k != r["region"])
    text = f"{r['ami_id']}\n  {r['region']}, {r['version']}, {how}\n  recipe {r['recipe']}" + (
        f"\n  copies {others}" if others else ""
    )
    base = r.get("base")
    if base:
        state = "cached" if base["cached"] else "baked"
        text += (
            f"\n  base {base['ami_id']} ({state}, recipe {base['recipe'][:12]}), app layer: {r['app_layer']}"
        )
    return text


@click.command("bake")
@click.option(
    "-e", "--env", "env_name", required=True, help="environment name", shell_complete=complete_environment
)
@click.option("--force", is_flag=True, help="bake even when an AMI with the same recipe exists")
@click.option(
    "--dry-run", is_flag=True, help="render and hash the recipe, say whether it is cached; bake nothing"
)
@click.option(
    "--layer",
    type=click.Choice(["base", "app"]),
    default=None,
    help="with bake.layers: base bakes only the base layer (the nightly job, with --force); app takes "
    "the base from the cache (baking it only when there is none) and --force rebakes only the app layer",
)
@click.option("--allow-dirty", is_flag=True, help="package uncommitted changes (the version is marked dirty)")
@click.pass_obj
def bake(app: App, env_name: str, force: bool, dry_run: bool, layer: str | None, allow_dirty: bool) -> None:
    """Package, render and `packer build` ENV's AMI; prints its id. Same recipe: the same AMI, no bake."""
    from baker import receipt

    configured = None
    if not (force or dry_run or layer):  # a cache hit answered from the last bake's receipt
        configured, hit = receipt.cache_hit(
            app.project_dir, env_name, lambda aws: app.aws_at(**aws, group="bake"), allow_dirty=allow_dirty
        )
        if hit is not None:
            app.emit(hit, _text)
            return
    from baker import bake as stage

    env = app.environment(env_name)
    build_host = None
    if app.local:
        from baker.local import cloud

        build_host = cloud.build_host()
    result = stage.Bake(
        app.project,
        env,
        app.aws(env, "bake"),
        build_host=build_host,
        allow_dirty=allow_dirty,
        receipt_key=configured,
    ).run(force=force, dry_run=dry_run, layer=layer)
    app.emit(result, _text)
