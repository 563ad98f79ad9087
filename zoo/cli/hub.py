"""``zoo publish``, ``zoo pull``, ``zoo models`` and ``zoo cache list|verify|clear``: thin commands over
``zoo.hub``. Domain failures (``ZooError``) exit 1 with one line; bad input exits 2."""

from __future__ import annotations

from pathlib import Path

import click

from .. import hub
from .bars import with_bars
from .common import ZooGroup, emit_json, json_option, names_or_all, precision_option, progress, table
from ..errors import ZooError
from ..spec import FILE_PRECISIONS

SOURCE_HELP = ("Where to pull from: an http(s):// base URL, a file:// URL or a folder holding manifest.json, or "
               "oci://HOST[:PORT]/REPO (NAME from REPO/NAME, the URL `zoo publish --to` took; or REPO/NAME[:TAG|@sha256:DIGEST]) "
               f"[default: ${hub.SOURCE_ENV}, else {hub.DEFAULT_SOURCE}/].")
CACHE_HELP = (f"Cache folder [default: ${hub.CACHE_ENV}, else $XDG_CACHE_HOME/zoo, else ~/.cache/zoo].")


def source_option(f):
    return click.option("--from", "source", metavar="SOURCE", default=None, help=SOURCE_HELP)(f)


def cache_option(f):
    return click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help=CACHE_HELP)(f)


def _mb(n: int | None) -> float | None:
    return None if n is None else round(n / 1e6, 2)


@click.command("publish")
@click.argument("names", nargs=-1)
@click.option("--to", "to", required=True, metavar="DIR|oci://HOST[:PORT]/REPO",
              help="Mirror folder to write (serve it with any static web server or object store), or an OCI "
                   "registry repository: each model is pushed to REPO/NAME, tagged with its version.")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=Path(hub.DEFAULT_SOURCE),
              show_default=True, help="Build output to publish (manifest.json at its root).")
@click.option("--sign-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="One private EC key (PEM, `zoo keygen`) for every TUF role: root, targets, snapshot, timestamp. "
                   "Simple; for offline root and targets keys use the three options below.")
@click.option("--root-key", "root_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Root key (offline; repeat for a threshold): needed for a mirror's first signed publish.")
@click.option("--targets-key", "targets_keys", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Targets key (offline; repeat for a threshold): signs new versions and their model signatures.")
@click.option("--online-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Online key: signs the snapshot and the short-lived timestamp (all that --renew-index needs).")
@click.option("--threshold", type=click.IntRange(1, 16), default=None,
              help="Signatures needed for root and targets, for a new root (default 1).")
@click.option("--license", "license_", metavar="SPDX", default=None,
              help="SPDX license id or expression recorded in new versions (no default: without it a release "
                   "states no license).")
@click.option("--labels", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Class labels recorded in new versions: one per line, or a JSON list (one per class).")
@click.option("--publisher", default=None, help="Who publishes [default: $ZOO_PUBLISHER, else user@host].")
@click.option("--index-ttl-days", default="1", show_default=True, metavar="DAYS",
              help="The timestamp and snapshot expire after this (at most 31); trusted clients refuse expired "
                   "ones: renew with --renew-index and the online key.")
@click.option("--targets-ttl-days", default="365", show_default=True, metavar="DAYS",
              help="The targets metadata (the release) expires after this (at most 3660).")
@click.option("--renew-index", is_flag=True, help="Write a fresh snapshot and timestamp even if nothing changed "
                                                  "(needs only --online-key).")
@click.option("--drop-unverified", is_flag=True,
              help="Signing an unsigned mirror: leave out earlier versions whose files the artifacts folder does "
                   "not hold (else the publish is refused: they cannot be checked).")
@json_option
def publish_cmd(names, to, artifacts, sign_key, root_keys, targets_keys, online_key, threshold, license_, labels,
                publisher, index_ttl_days, targets_ttl_days, renew_index, drop_unverified, as_json):
    """Publish built artifacts as a static mirror: manifest.json, the files, and TUF metadata.

    Every file is checked against the manifest's sha256 before anything is written, and only
    listed files are published. A model whose files changed becomes a new version (1, 2, ...);
    every version stays pullable (NAME@V), files are stored by sha256 and never rewritten.
    Publishing the same files again changes nothing. The mirror's metadata/ folder is a TUF
    repository (python-tuf): signed with the keys given, verified with them before anything is
    signed on top of it. Layout, roles and keys: docs/releases.md.

    \b
    Examples:
      zoo publish --to /srv/www/zoo
      zoo publish dense_b0 --artifacts /tmp/zoo --to ./mirror --json
      zoo keygen --publisher --out keys/      # keys/root.key, targets.key, online.key (+ .pub)
      zoo publish --to ./mirror --root-key keys/root.key --targets-key keys/targets.key \\
          --online-key keys/online.key --license Apache-2.0 --labels labels.txt
      zoo publish --to ./mirror --online-key keys/online.key --renew-index     # daily, from cron
      zoo publish --to ./mirror --sign-key zoo.key --license MIT              # one key for every role
      python -m http.server -d ./mirror 8000   # then: zoo pull dense_b0 --from http://localhost:8000/
      zoo publish --to oci://registry.example.com/zoo   # then: zoo pull dense_b0 --from oci://.../zoo
      zoo publish --artifacts ./mirror --to oci://registry.example.com/zoo   # + release referrers:
                                        # zoo pull dense_b0 --from oci://.../zoo --trust root.json
    """
    if to.lower().startswith("oci://"):  # zoo.hub.oci
        from .export import publish_oci

        return publish_oci(names, to, artifacts, as_json)
    to = Path(to)
    if license_ is None:
        progress("note: no --license given; new versions record license null (the release states none)")
    rows = hub.publish(artifacts, to, names or None, progress=progress, sign_key=sign_key, root_keys=root_keys,
                       targets_keys=targets_keys, online_key=online_key, threshold=threshold, license=license_,
                       labels=labels, publisher=publisher, index_ttl_days=index_ttl_days,
                       targets_ttl_days=targets_ttl_days, renew_index=renew_index, drop_unverified=drop_unverified)
    if as_json:
        emit_json({"to": str(to), "files": rows})
        return
    files = [r for r in rows if r["role"] != "manifest"]
    click.echo(table([dict(r, mb=_mb(r["bytes"]), sha=r["sha256"][:12]) for r in files],
                     [("model", "model"), ("version", "version"), ("path", "file"), ("mb", "MB"), ("sha", "sha256"),
                      ("status", "status")]))
    new = sum(r["status"] == "published" for r in files)
    click.echo(f"published {new} file(s), {len(files) - new} unchanged, to {to}")


@click.command("pull")
@click.argument("names", nargs=-1)
@click.option("--all", "all_", is_flag=True, help="Pull every model the source offers.")
@source_option
@precision_option("fp32", valid=FILE_PRECISIONS,
                  help=f"Comma list of {', '.join(FILE_PRECISIONS)}: the model files to pull (int8_static and int4 "
                       "where zoo bench --recommend made them).")
@click.option("--with-test-data", is_flag=True,
              help="Also pull test_data_set_0 (so that `zoo verify --artifacts VIEW` can run on the view).")
@click.option("--with-weights", is_flag=True,
              help="Also pull the safetensors weights and training record, where the model was built from them "
                   "(to fine-tune it: zoo.create(NAME, weights=PATH)).")
@click.option("--lock", "lock", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Lockfile (zoo lock): pull exactly its versions and bytes, from its source unless --from names "
                   "another mirror; no NAME pulls all of them.")
@click.option("--trust", "trust", metavar="ROOT.json|KEY.pub", default=None,
              help=f"Trust anchor: the publisher's TUF root metadata, or one of its root keys (PEM); the metadata "
                   f"and the model signature are checked before anything is written [default: ${hub.TRUST_ENV}, "
                   "else `zoo trust add`].")
@click.option("--runtime", "runtime", metavar="RUNTIME[@VERSION]", default=None,
              help="Pull the fastest file verified on this runtime (onnxruntime, onnxruntime-node, onnxruntime-web, "
                   "openvino, tract; @1.16 matches 1.16.x): an older-opset target where that runtime cannot load "
                   "the default file. Else the runtime versions there are records for are named (exit 2).")
@click.option("--require-verified", "require_verified", metavar="RUNTIME[@VERSION]", default=None,
              help="Refuse a file that carries no passing verification record for this runtime.")
@cache_option
@json_option
def pull_cmd(names, all_, source, precisions, with_test_data, with_weights, lock, trust, runtime, require_verified,
             cache_dir, as_json):
    """Download models into the cache, verified against the source's manifest.

    Files are stored by sha256 and copied into a per-model view (an artifacts folder of its own:
    CACHE/models/NAME/manifest.json and NAME/model.onnx). Cached files are re-verified on every
    pull; with ZOO_OFFLINE=1 nothing is downloaded and only verified cached files are used.
    A transfer slower than ZOO_SPEED_LIMIT bytes/s (1024) over ZOO_SPEED_TIME seconds (30) is
    abandoned and retried; the whole pull ends within ZOO_DEADLINE seconds (3600). A redirect
    from https to http is refused unless ZOO_ALLOW_HTTP=1. A bar shows each file on a terminal.

    \b
    Examples:
      zoo pull dense_b0 --from https://example.org/zoo/
      zoo pull dense_b0@2 --from ./mirror                 # version 2 (dense_b0@sha256:<digest> also works)
      zoo pull --lock zoo.lock --from https://mirror2.example.org/zoo/
      zoo pull dense_b0 --from ./mirror --trust root.json
      zoo pull --all --from ./mirror --with-test-data
      zoo pull dense_b3 --precision fp32,int8 --cache-dir /tmp/zoo-cache --json
      zoo pull dense_b0 --from ./mirror --with-weights
      zoo pull dense_b0 --from ./mirror --runtime onnxruntime@1.16     # the file verified on ORT 1.16
      zoo pull dense_b0 --from ./mirror --trust root.json --require-verified onnxruntime-web
      ZOO_OFFLINE=1 zoo pull dense_b0
      ZOO_SPEED_LIMIT=10000 ZOO_SPEED_TIME=10 ZOO_DEADLINE=600 zoo pull --all
    """
    if lock is None or names or all_:
        names_or_all(names, all_)
    results = hub.pull(None if all_ or not names else names, source, precisions=precisions,
                       with_test_data=with_test_data, with_weights=with_weights, cache_dir=cache_dir,
                       progress=with_bars(progress), lock=lock, trust=trust, runtime=runtime,
                       require_verified=require_verified)  # one deadline for the whole command
    if as_json:
        emit_json([r.summary() for r in results])
        return
    click.echo(table([{"name": r.name, "version": r.version if r.version is not None else "-",
                       "precision": r.precision, "status": r.status, "trust": r.trust,
                       "mb": _mb(sum(f["bytes"] for f in r.files)), "path": str(r.path)} for r in results],
                     [("name", "name"), ("version", "version"), ("precision", "precision"), ("status", "status"),
                      ("trust", "signature"), ("mb", "MB"), ("path", "path")]))
    for d in dict.fromkeys(f"{r.name}@{r.digest}" for r in results if r.digest):
        click.echo(f"  {d}")  # the full digest: copy it to pin exactly these bytes


@click.command("models")
@source_option
@click.option("--trust", "trust", metavar="ROOT.json|KEY.pub", default=None,
              help=f"Trust anchor: list only what verifies against it [default: ${hub.TRUST_ENV}, else `zoo trust add`].")
@cache_option
@json_option
def models_cmd(source, trust, cache_dir, as_json):
    """List the models a source offers.

    \b
    Examples:
      zoo models                                  # what ./artifacts holds
      zoo models --from https://example.org/zoo/ --json
      ZOO_OFFLINE=1 zoo models --from https://example.org/zoo/   # from the cached manifest
    """
    rows = hub.list_models(source, cache_dir=cache_dir, trust=trust, progress=progress)
    if rows and not any(r["versions"] for r in rows):  # a plain read: the mirror's versions beside it, if any
        try:
            versions = hub.list_versions(source, cache_dir=cache_dir, progress=progress) or {}
        except hub.OfflineError:
            versions = {}
        for r in rows:
            r["versions"] = versions.get(r["name"], [])
    if as_json:
        emit_json(rows)
        return
    if not rows:
        click.echo(f"{hub.resolve_source(source)} offers no models")
        return
    click.echo(table([dict(r, precisions=",".join(r["precisions"]), mb=_mb(r["model_bytes"]),
                           sha=r["model_sha"][:12],
                           vers=",".join(str(v["version"]) + ("v" if v["verified"] else "s" if v["signed"] else "")
                                    for v in r["versions"]) or "-")
                      for r in rows],
                     [("name", "name"), ("flavor", "flavor"), ("input_dim", "input_dim"),
                      ("num_classes", "classes"), ("params", "params"), ("precisions", "precisions"),
                      ("mb", "MB"), ("sha", "sha256"), ("vers", "versions (s: signed, v: verified)")]))


@click.group("cache", cls=ZooGroup)
def cache_group():
    """Inspect, re-verify or empty the download cache.

    \b
    Examples:
      zoo cache list
      zoo cache verify --json
      zoo cache clear dense_b0
    """


@cache_group.command("list")
@cache_option
@json_option
def cache_list_cmd(cache_dir, as_json):
    """List the cached models (one view folder each).

    \b
    Examples:
      zoo cache list
      zoo cache list --cache-dir /tmp/zoo-cache --json
    """
    info = hub.cache_list(cache_dir)
    if as_json:
        emit_json(info)
        return
    if info["models"]:
        click.echo(table([dict(v, precisions=",".join(v["precisions"]) or "-", mb=_mb(v["bytes"]),
                               test_data="yes" if v["test_data"] else "no") for v in info["models"]],
                         [("name", "name"), ("precisions", "precisions"), ("test_data", "test data"),
                          ("files", "files"), ("mb", "MB"), ("view", "view")]))
    else:
        click.echo("no models cached")
    click.echo(f"{info['cache_dir']}: {info['blobs']} blob(s), {info['blob_bytes'] / 1e6:.1f} MB")


@cache_group.command("verify")
@cache_option
@json_option
def cache_verify_cmd(cache_dir, as_json):
    """Re-hash every cached file against its manifest; exit 1 if any is corrupt or missing.

    A model that fails is repaired by pulling it again.

    \b
    Examples:
      zoo cache verify
      zoo cache verify --cache-dir /tmp/zoo-cache --json
    """
    rows = hub.cache_verify(cache_dir, progress=progress)
    bad = [r for r in rows if r["status"] not in ("ok", "leftover")]
    if as_json:
        emit_json({"cache_dir": str(hub.resolve_cache_dir(cache_dir)), "files": rows, "failures": len(bad)})
    elif rows:
        shown = bad or rows
        click.echo(table(shown, [("kind", "kind"), ("status", "status"), ("path", "path"), ("detail", "detail")]))
    if bad:
        raise ZooError(f"{len(bad)} of {len(rows)} cached file(s) failed verification; pull them again "
                       "(or `zoo cache clear`)")
    if not as_json:
        click.echo(f"all {sum(r['status'] == 'ok' for r in rows)} cached file(s) verified")


@cache_group.command("clear")
@click.argument("names", nargs=-1)
@cache_option
@json_option
def cache_clear_cmd(names, cache_dir, as_json):
    """Remove NAME's view (and blobs nothing else uses), or everything the zoo cached.

    Only the zoo's own folders in the cache dir are removed.

    \b
    Examples:
      zoo cache clear
      zoo cache clear dense_b0 dense_b1 --cache-dir /tmp/zoo-cache
    """
    info = hub.cache_clear(names or None, cache_dir, progress=progress)
    if as_json:
        emit_json(info)
        return
    what = ", ".join(info["removed"]) if info["removed"] and info["removed"] != ["all"] else "everything"
    click.echo(f"removed {what}: {info['files']} file(s), {info['bytes'] / 1e6:.1f} MB from {info['cache_dir']}")


COMMANDS = (publish_cmd, pull_cmd, models_cmd, cache_group)
