"""``zoo lock``, ``zoo trust add|list|remove`` and ``zoo keygen``: thin commands over ``zoo.hub``'s
releases (versions, lockfiles, signatures)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import hub
from .common import ZooGroup, emit_json, json_option, progress, table
from .hub import cache_option, source_option

TRUST_HELP = ("Public key (PEM) the release must be signed with: the index and the model signature are checked "
              f"before anything is written [default: ${hub.TRUST_ENV}, else the key `zoo trust add` set for the source].")


def trust_option(f):
    return click.option("--trust", "trust", metavar="PUBLIC_KEY", default=None, help=TRUST_HELP)(f)


@click.command("lock")
@click.argument("names", nargs=-1)
@source_option
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=Path("zoo.lock"),
              show_default=True, help="Lockfile to write.")
@trust_option
@cache_option
@json_option
def lock_cmd(names, source, out, trust, cache_dir, as_json):
    """Write a lockfile: each model's version, digest and every file's path, size and sha256.

    NAME pins the latest version, NAME@V version V, NAME@sha256:DIGEST that digest; no NAME
    locks every model the source offers. `zoo pull --lock FILE` then brings in exactly these
    bytes, from the same source or any mirror of it (--from), or fails.

    \b
    Examples:
      zoo lock dense_b0 --from https://example.org/zoo/
      zoo lock dense_b0@2 dense_b3 --from ./mirror --out models.lock --trust zoo.pub
      zoo pull --lock models.lock --from https://other-mirror.example.org/zoo/
    """
    lk = hub.lock(list(names) or None, source, out, cache_dir=cache_dir, trust=trust, progress=progress)
    if as_json:
        emit_json(dict(lk, path=str(out)))
        return
    click.echo(table([{"name": n, "version": m["version"], "digest": m["digest"][:19] + "...",
                       "files": len(m["files"])} for n, m in lk["models"].items()],
                     [("name", "name"), ("version", "version"), ("digest", "digest"), ("files", "files")]))
    click.echo(f"wrote {out} (source {lk['source']})")


@click.group("trust", cls=ZooGroup)
def trust_group():
    """Trust a public key for a source: every later pull from it must be signed with that key.

    \b
    Examples:
      zoo trust add https://example.org/zoo/ zoo.pub
      zoo trust list
      zoo trust remove https://example.org/zoo/
    """


@trust_group.command("add")
@click.argument("source")
@click.argument("public_key", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def trust_add_cmd(source, public_key, as_json):
    """Trust PUBLIC_KEY (PEM) for SOURCE (a copy is kept; replaces an earlier key).

    \b
    Examples:
      zoo trust add https://example.org/zoo/ zoo.pub
    """
    info = hub.trust_add(source, public_key)
    if as_json:
        emit_json(info)
        return
    click.echo(f"trusting {info['key_id'][:23]}... for {info['source']}")


@trust_group.command("list")
@json_option
def trust_list_cmd(as_json):
    """The sources with a trusted key.

    \b
    Examples:
      zoo trust list --json
    """
    rows = hub.trust_list()
    if as_json:
        emit_json(rows)
        return
    click.echo(table(rows, [("source", "source"), ("key_id", "key"), ("key_file", "key file")]) if rows
               else "no source has a trusted key")


@trust_group.command("remove")
@click.argument("source")
@json_option
def trust_remove_cmd(source, as_json):
    """Stop requiring a signature from SOURCE.

    \b
    Examples:
      zoo trust remove https://example.org/zoo/
    """
    info = hub.trust_remove(source)
    if as_json:
        emit_json(info)
        return
    click.echo(f"no longer trusting {info['key_id'][:23]}... for {info['source']}")


@click.command("keygen")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Private key file to write (mode 0600); the public key goes to OUT.pub.")
@json_option
def keygen_cmd(out, as_json):
    """Make an ECDSA P-256 key pair for `zoo publish --sign-key` and `zoo pull --trust`.

    The same as: openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out OUT;
    openssl ec -in OUT -pubout -out OUT.pub

    \b
    Examples:
      zoo keygen --out zoo.key        # zoo.key (keep it secret) and zoo.key.pub (publish it)
    """
    info = hub.keygen(out)
    if as_json:
        emit_json(info)
        return
    click.echo(f"wrote {info['private_key']} (secret) and {info['public_key']} ({info['key_id'][:23]}...)")


COMMANDS = (lock_cmd, trust_group, keygen_cmd)
