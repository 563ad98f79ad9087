"""Remove or weaken each verification step of a trusted pull in turn; each must make a test fail.

    python tools/mutation_check.py            # every mutation (about 10-20 minutes on 2 cores)
    python tools/mutation_check.py M4 M5      # some of them
    python tools/mutation_check.py --list

A mutation is either a change to the zoo's source (applied in place, always restored) or a patch of
python-tuf's own checks (a pytest plugin loaded with ``-p``: the zoo relies on them, so the tests must
notice when they are gone). For each, the tests named run; the mutation is *killed* when at least one
fails. The table this prints is the one in the closing note of issue 31. Exit 1 if any survives.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
R = "tests/test_releases.py"

# (id, step, how: ("src", file, old, new) | ("plugin", code), tests: pytest args)
MUTATIONS = [
    ("M1", "metadata signatures (python-tuf's threshold check)",
     ("plugin", "from tuf.api import metadata as m\n"
                "m.Root.verify_delegate = lambda *a, **k: None\n"
                "m.Targets.verify_delegate = lambda *a, **k: None\n"),
     [R, "-k", "forged_metadata or other_publisher or threshold"]),
    ("M2", "metadata expiry (python-tuf)",
     ("plugin", "from tuf.api import _payload as p\np.Signed.is_expired = lambda self, t=None: False\n"),
     [R, "-k", "freeze"]),
    ("M3", "rollback: trusted state kept per anchor",
     ("src", "zoo/hub/trust.py", "    return anchor.state_dir\n",
      "    import tempfile\n    return Path(tempfile.mkdtemp())\n"),
     [R, "-k", "rollback"]),
    ("M4", "a version manifest's TUF target hash",
     ("src", "zoo/hub/metadata.py", "            tf.verify_length_and_hashes(data)\n", "            pass\n"),
     [R, "-k", "swapped_manifest"]),
    ("M5", "the model_signing bundle against the targets keys",
     ("src", "zoo/hub/plan.py", "        verify_signature(cat, v, entry, bundle)\n", "        pass\n"),
     [R, "-k", "other_key_bundle"]),
    ("M6", "a trusted version must have a model signature",
     ("src", "zoo/hub/plan.py", "        if v.signature is None:\n", "        if False:\n"),
     [R, "-k", "no_bundle"]),
    ("M7", "each file's sha256 on transfer",
     ("src", "zoo/hub/source.py", "            if h.hexdigest() != sha:\n", "            if False:\n"),
     [R, "-k", "tampered_blob", "tests/test_hub.py", "-k", "tamper"]),
    ("M8", "each file's sha256 on copy into the view",
     ("src", "zoo/hub/paths.py", '            if n != rec["bytes"] or sha != rec["sha256"]:\n', "            if False:\n"),
     ["tests/test_attack4.py", "-k", "copy_whose_bytes_differ"]),
    ("M9", "path safety of a manifest's files",
     ("src", "zoo/hub/entries.py", '        safe_relpath(f["path"], f"{label} file")\n', "        pass\n"),
     ["tests/test_hub.py", "-k", "unsafe_paths"]),
    ("M10", "the timestamp horizon (a freeze bounded in time)",
     ("src", "zoo/hub/tufclient.py", "    if md.signed.expires > limit:\n", "    if False:\n"),
     [R, "-k", "years_ahead"]),
    ("M11", "trust bound to the normalised source identity",
     ("src", "zoo/hub/source.py", "    return urllib.parse.urlunsplit((scheme, host, path, \"\", \"\"))\n",
      "    return url if url.endswith('/') else url + '/'\n"),
     [R, "-k", "spelling"]),
    ("M12", "the publisher verifies the mirror before signing",
     ("src", "zoo/hub/publication.py", "            repo.verify_state(self.state, self.ring, self.where)\n", "            pass\n"),
     [R, "-k", "tampered_signed_mirror"]),
    ("M13", "the publisher signs an unsigned version only if it matches the local files",
     ("src", "zoo/hub/publication.py", "        if self.trusted or not self.ring.any:\n            return\n",
      "        return\n"),
     [R, "-k", "unsigned_mirror_checks"]),
    ("M14", "a damaged trust store is a failure",
     ("src", "zoo/hub/trust.py", "        if not ok:\n            raise TrustStoreError", "        if False:\n            raise TrustStoreError"),
     [R, "-k", "damaged"]),
    ("M15", "the root key anchor must have signed root 1",
     ("src", "zoo/hub/tufclient.py", "    if key.keyid not in md.signed.roles[\"root\"].keyids or sig is None:\n",
      "    if False:\n"),
     [R, "-k", "root_key_as_anchor"]),
]


def run_one(mid, step, how, tests) -> tuple[str, float, str]:
    env = dict(os.environ)
    plugin_dir = None
    path = original = None
    if how[0] == "src":
        _, rel, old, new = how
        path = ROOT / rel
        original = path.read_text()
        if original.count(old) < 1:
            return "NOT APPLIED", 0.0, f"{old.strip()!r} not found in {rel}"
        path.write_text(original.replace(old, new, 1))
        args = []
    else:
        plugin_dir = tempfile.mkdtemp(prefix="zoo-mut-")
        Path(plugin_dir, "zoo_mutation.py").write_text(textwrap.dedent(how[1]))
        env["PYTHONPATH"] = plugin_dir + os.pathsep + env.get("PYTHONPATH", "")
        args = ["-p", "zoo_mutation"]
    groups, cur = [], []
    for a in tests:  # "file -k expr file -k expr": one pytest run per group
        if a.startswith("tests/") and cur and not cur[-1] == "-k":
            groups.append(cur)
            cur = []
        cur.append(a)
    groups.append(cur)
    t0 = time.monotonic()
    try:
        failed = []
        for g in groups:
            res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *args, *g],
                                 cwd=ROOT, env=env, capture_output=True, text=True)
            if res.returncode == 1:
                failed.append(next((ln for ln in res.stdout.splitlines() if ln.startswith("FAILED")), "a test failed"))
            elif res.returncode not in (0, 5):
                return "ERROR", time.monotonic() - t0, res.stdout[-400:] + res.stderr[-400:]
        return ("killed" if failed else "SURVIVED"), time.monotonic() - t0, (failed[0] if failed else "")
    finally:
        if path is not None:
            path.write_text(original)


def main(argv: list[str]) -> int:
    if "--list" in argv:
        for mid, step, *_ in MUTATIONS:
            print(f"{mid}  {step}")
        return 0
    chosen = [m for m in MUTATIONS if not argv or m[0] in argv]
    rows = []
    for mid, step, how, tests in chosen:
        status, secs, detail = run_one(mid, step, how, tests)
        rows.append((mid, step, status, secs, detail))
        print(f"{mid:4} {status:9} {secs:6.0f}s  {step}  {detail[:140]}", flush=True)
    print("\n| mutation | step removed or weakened | result | failing test |\n|---|---|---|---|")
    for mid, step, status, _, detail in rows:
        print(f"| {mid} | {step} | {status} | {detail.replace('FAILED ', '')[:120]} |")
    return 0 if all(r[2] == "killed" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
