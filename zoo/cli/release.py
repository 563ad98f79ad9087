"""``zoo lock``, ``zoo trust add|list|remove|require``, ``zoo keygen`` and ``zoo rotate``: thin commands
over ``zoo.hub``'s releases (versions, lockfiles, TUF trust)."""

from __future__ import annotations

from pathlib import Path

import click

from .. import hub
from .common import ZooGroup, emit_json, json_option, progress, table
from .hub import cache_option, source_option

TRUST_HELP = ("Trust anchor: the publisher's TUF root metadata (root.json) or one of its root keys (PEM); the "
              "metadata and the model signature are checked before anything is written "
              f"[default: ${hub.TRUST_ENV}, else what `zoo trust add` set for the source].")


def trust_option(f):
    return click.option("--trust", "trust", metavar="ROOT.json|KEY.pub", default=None, help=TRUST_HELP)(f)


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
      zoo lock dense_b0@2 dense_b3 --from ./mirror --out models.lock --trust root.json
      zoo pull --lock models.lock --from https://other-mirror.example.org/zoo/
    """
    lk = hub.lock(list(names) or None, source, out, cache_dir=cache_dir, trust=trust, progress=progress)
    if as_json:
        emit_json(dict(lk, path=str(out)))
        return
    click.echo(table([{"name": n, "version": m["version"], "digest": m["digest"],
                       "files": len(m["files"])} for n, m in lk["models"].items()],
                     [("name", "name"), ("version", "version"), ("files", "files"), ("digest", "digest")]))
    click.echo(f"wrote {out} (source {lk['source']})")


@click.group("trust", cls=ZooGroup)
def trust_group():
    """Trust a publisher's root for a source: every later pull from it must verify against it.

    The anchor is the publisher's TUF root metadata (root.json, best: it names every root key and
    the threshold) or one of its root keys (PEM: the mirror's first root must be signed by it).
    Trust is bound to the source, not to how its URL is spelled.

    \b
    Examples:
      zoo trust add https://example.org/zoo/ root.json
      zoo trust add ./mirror root.key.pub
      zoo trust require              # every pull needs a trusted root (or ZOO_REQUIRE_SIGNED=1)
      zoo trust list
      zoo trust remove https://example.org/zoo/
    """


@trust_group.command("add")
@click.argument("source")
@click.argument("anchor", metavar="ROOT.json|KEY.pub", type=click.Path(dir_okay=False, path_type=Path))
@json_option
def trust_add_cmd(source, anchor, as_json):
    """Trust ANCHOR for SOURCE (a copy is kept; replaces an earlier anchor).

    \b
    Examples:
      zoo trust add https://example.org/zoo/ root.json
    """
    info = hub.trust_add(source, anchor)
    if as_json:
        emit_json(info)
        return
    keys = ", ".join(k[:16] + "..." for k in info["root_keyids"])
    click.echo(f"trusting {'root metadata' if info['kind'] == 'root' else 'root key'} ({keys}) for {info['source']}")


@trust_group.command("list")
@json_option
def trust_list_cmd(as_json):
    """The sources with a trusted root, and whether every pull needs one.

    \b
    Examples:
      zoo trust list --json
    """
    rows = hub.trust_list()
    policy = hub.trust_policy()
    if as_json:
        emit_json({"require": policy["require"], "sources": rows})
        return
    shown = [dict(r, keys=", ".join(k[:16] + "..." for k in r["root_keyids"])) for r in rows]
    click.echo(table(shown, [("source", "source"), ("kind", "anchor"), ("keys", "root keys")]) if rows
               else "no source has a trusted root")
    click.echo("every pull needs a trusted root" + (" ($ZOO_REQUIRE_SIGNED)" if policy["require_env"] else "")
               if policy["require"] else "pulls from other sources are not checked (`zoo trust require` to refuse them)")


@trust_group.command("remove")
@click.argument("source")
@json_option
def trust_remove_cmd(source, as_json):
    """Stop requiring a signature from SOURCE (and forget the metadata verified for it).

    \b
    Examples:
      zoo trust remove https://example.org/zoo/
    """
    info = hub.trust_remove(source)
    if as_json:
        emit_json(info)
        return
    click.echo(f"no longer trusting a root for {info['source']}")


@trust_group.command("require")
@click.option("--off", is_flag=True, help="Allow pulls from sources without a trusted root again.")
@json_option
def trust_require_cmd(off, as_json):
    """Make every pull need a trusted root (a source without one is refused, exit 1).

    \b
    Examples:
      zoo trust require
      zoo trust require --off
    """
    info = hub.trust_require(not off)
    if as_json:
        emit_json(info)
        return
    click.echo("every pull now needs a trusted root" if info["require"] else
               "pulls from sources without a trusted root are allowed (not checked)")


@click.command("keygen")
@click.option("--out", "out", type=click.Path(path_type=Path), required=True,
              help="Private key file to write (mode 0600; the public key goes to OUT.pub), or with --publisher "
                   "the folder for root.key, targets.key and online.key.")
@click.option("--publisher", "publisher", is_flag=True,
              help="Make the three keys a publisher needs (TUF roles): root and targets (keep them offline) and "
                   "online (timestamp and snapshot, for renewals).")
@click.option("--passphrase", is_flag=True,
              help=f"Encrypt the private key(s) (root and targets with --publisher) with a passphrase: "
                   f"${hub.keys.PASSPHRASE_ENV}, else asked on the terminal.")
@click.option("--force", is_flag=True,
              help="Write the private key(s) even inside a git work tree where git does not ignore them (refused "
                   "by default).")
@json_option
def keygen_cmd(out, publisher, passphrase, force, as_json):
    """Make ECDSA P-256 keys for `zoo publish` and `zoo trust`.

    One key (OUT, OUT.pub) can hold every role (`zoo publish --sign-key OUT`); a publisher that
    keeps root and targets offline makes three (--publisher). The same as: openssl ecparam -name
    prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out OUT; openssl ec -in OUT -pubout
    -out OUT.pub

    \b
    Examples:
      zoo keygen --out zoo.key                       # zoo.key (secret) and zoo.key.pub
      zoo keygen --publisher --out keys/             # keys/{root,targets,online}.key (+ .pub)
      ZOO_KEY_PASSPHRASE=... zoo keygen --publisher --passphrase --out keys/

    Inside a git work tree, a private key must be git-ignored (or give --force): there it is one
    `git add .` away from being published.
    """
    from ..keyfile_guard import check_not_in_git_worktree

    check_not_in_git_worktree(Path(out) / "root.key" if publisher else out, force)  # before any key exists
    infos = hub.keygen_publisher(out, passphrase=passphrase) if publisher else [hub.keygen(out, passphrase=passphrase)]
    if as_json:
        emit_json(infos if publisher else infos[0])
        return
    for info in infos:
        role = f"{info['role']} key: " if publisher else ""
        click.echo(f"wrote {role}{info['private_key']} (secret{', encrypted' if info['encrypted'] else ''}) and "
                   f"{info['public_key']} ({info['key_id'][:23]}...)")


@click.command("rotate")
@click.option("--to", "to", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="The signed mirror whose keys change.")
@click.option("--root-key", "root_keys", multiple=True, required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A current root key (repeat up to the current threshold): they sign the new root.")
@click.option("--new-root-key", "new_root_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="A new root key (repeat for several; default: keep the current root keys).")
@click.option("--threshold", type=click.IntRange(1, 16), default=None,
              help="Signatures the new root needs for root and targets.")
@click.option("--new-targets-key", "new_targets_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Replace the targets keys (the release is re-signed with them).")
@click.option("--new-online-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Replace the online key (snapshot and timestamp).")
@click.option("--online-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The current online key (to re-sign snapshot and timestamp when only targets keys change).")
@json_option
def rotate_cmd(to, root_keys, new_root_keys, threshold, new_targets_keys, new_online_key, online_key, as_json):
    """Rotate a signed mirror's keys: a new root version signed by the current and the new root keys.

    Clients that trusted the old root follow the rotation on their next pull and refuse the
    dropped keys from then on.

    \b
    Examples:
      zoo rotate --to ./mirror --root-key keys/root.key --new-root-key new/root.key
      zoo rotate --to ./mirror --root-key keys/root.key --new-root-key r1.key --new-root-key r2.key --threshold 2
      zoo rotate --to ./mirror --root-key keys/root.key --new-targets-key new/targets.key --online-key keys/online.key
    """
    info = hub.rotate(to, root_keys=root_keys, new_root_keys=new_root_keys, threshold=threshold,
                      new_targets_keys=new_targets_keys, online_key=online_key, new_online_key=new_online_key,
                      progress=progress)
    if as_json:
        emit_json(info)
        return
    click.echo(f"{info['to']}: root version {info['root_version']}, {len(info['root_keyids'])} root key(s), "
               f"threshold {info['root_threshold']}")


COMMANDS = (lock_cmd, trust_group, keygen_cmd, rotate_cmd)
