#!/usr/bin/env node
// Check zoo artifacts in JavaScript runtimes: every model file (every precision, with its
// external-data files where it has them) listed in a manifest is run with onnxruntime-node and with onnxruntime-web (wasm backend) on the model's
// test data (test_data_set_*/input_*.pb, read with a small TensorProto reader) and compared
// with the PyTorch-computed outputs: names, then shapes, then values, passing iff
// |actual - expected| <= atol + rtol * |expected| for every element.
//
// Tolerances are arguments (--tol PRECISION=ATOL,RTOL), one per precision checked: the zoo's
// Python side passes verify/parity.py's DEFAULT_TOLERANCES, so there is one source of truth.
//
// Exit status: 0 every check passed; 1 a check failed (the worst error is named on stderr);
// 2 bad arguments or unreadable input; 3 nothing failed but a runtime was unavailable;
// 4 an internal error.

import { readFile } from "node:fs/promises";
import { existsSync, statSync, readdirSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";

import { parseTensorProto } from "./tensorproto.mjs";
import { errorMetrics } from "./metrics.mjs";
import { externalDataOf, openSession } from "./session.mjs";

const RUNTIMES = { node: "onnxruntime-node", web: "onnxruntime-web" };
const PRECISIONS = ["fp32", "int8", "fp16"];

const USAGE = `usage: node verify.mjs [options] ARTIFACTS_DIR|MANIFEST_JSON

Runs every model file listed in the manifest with onnxruntime-node and onnxruntime-web (wasm)
on its test data and compares with the expected outputs.

options:
  --tol PRECISION=ATOL,RTOL  tolerance of one precision (repeat; required for each precision
                             checked, e.g. --tol fp32=1e-4,1e-3 --tol int8=3,0.25)
  --models a,b               only these models (default: all in the manifest)
  --runtimes node,web        runtimes to use (default: node,web)
  --precisions fp32,int8     only these precisions (default: every precision listed)
  --threads N                intra-op threads per session (default: 1)
  --json                     print {"runtimes": ..., "models": {name: [parity records]}} on stdout
  --probe RUNTIME            print the runtime's version (exit 0) or why it is unavailable (exit 3)
  -h, --help                 show this help

exit status: 0 all passed, 1 a check failed, 2 bad input, 3 a runtime was unavailable,
4 internal error`;

class UsageError extends Error {}

function splitList(value, what, allowed) {
  const items = value.split(",").map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new UsageError(`--${what} needs at least one value`);
  if (allowed) {
    const bad = items.filter((s) => !allowed.includes(s));
    if (bad.length) throw new UsageError(`unknown ${what} ${bad.join(", ")}; valid: ${allowed.join(", ")}`);
  }
  return [...new Set(items)];
}

function parseTolerances(values) {
  const tols = {};
  for (const v of values ?? []) {
    const m = /^([a-z0-9]+)=([^,]+),([^,]+)$/.exec(v);
    if (!m) throw new UsageError(`--tol ${v}: expected PRECISION=ATOL,RTOL`);
    const [, precision, a, r] = m;
    if (!PRECISIONS.includes(precision)) throw new UsageError(`--tol ${v}: unknown precision ${precision}`);
    const atol = Number(a), rtol = Number(r);
    if (!Number.isFinite(atol) || !Number.isFinite(rtol) || atol < 0 || rtol < 0) {
      throw new UsageError(`--tol ${v}: tolerances must be numbers >= 0`);
    }
    tols[precision] = { atol, rtol };
  }
  return tols;
}

function parseCli(argv) {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        tol: { type: "string", multiple: true },
        models: { type: "string" },
        runtimes: { type: "string", default: "node,web" },
        precisions: { type: "string" },
        threads: { type: "string", default: "1" },
        json: { type: "boolean", default: false },
        probe: { type: "string" },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    throw new UsageError(e.message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { help: true };
  const threads = Number(values.threads);
  if (!Number.isInteger(threads) || threads < 1) throw new UsageError(`--threads must be a positive integer`);
  if (values.probe !== undefined) {
    return { probe: splitList(values.probe, "runtimes", Object.keys(RUNTIMES))[0], threads };
  }
  if (positionals.length !== 1) throw new UsageError("expected one ARTIFACTS_DIR or MANIFEST_JSON (see --help)");
  return {
    target: positionals[0],
    tolerances: parseTolerances(values.tol),
    models: values.models ? splitList(values.models, "models") : null,
    runtimes: splitList(values.runtimes, "runtimes", Object.keys(RUNTIMES)),
    precisions: values.precisions ? splitList(values.precisions, "precisions", PRECISIONS) : null,
    threads,
    json: values.json,
  };
}

// --- runtimes -------------------------------------------------------------------------------

/** Load a runtime: {ort, version, label} or {reason} when it cannot be used here. */
async function loadRuntime(runtime, threads) {
  const pkg = RUNTIMES[runtime];
  let ort;
  try {
    ort = await import(pkg);
  } catch (e) {
    return { reason: `${pkg} cannot be loaded (${firstLine(e)}); install it: cd verify/node && ONNXRUNTIME_NODE_INSTALL=skip npm ci` };
  }
  ort = ort.default ?? ort;
  let label = null;
  if (runtime === "web") {
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = "error";
    label = `wasm backend, ${threads} thread${threads > 1 ? "s" : ""}`;
  }
  const v = ort.env?.versions?.[runtime] ?? "unknown";
  return { ort, label, version: `node ${process.version}, ${pkg} ${v}` };
}

async function createSession(rt, runtime, file, threads) {
  const options = { graphOptimizationLevel: "all", logSeverityLevel: 3 };
  if (runtime === "node") {
    options.executionProviders = ["cpu"];
    options.intraOpNumThreads = threads;
    options.interOpNumThreads = 1;
  } else {
    options.executionProviders = ["wasm"];
  }
  return openSession(rt.ort, runtime, file.abs, file.external, options, file.bytes);
}

// --- manifest and test data -----------------------------------------------------------------

async function readManifest(target) {
  let file = target;
  if (existsSync(target) && statSync(target).isDirectory()) file = path.join(target, "manifest.json");
  let text;
  try {
    text = await readFile(file, "utf8");
  } catch (e) {
    throw new UsageError(e.code === "ENOENT" ? `no manifest at ${file}` : `cannot read ${file}: ${e.message}`);
  }
  let manifest;
  try {
    manifest = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${file}: not valid JSON (${e.message})`);
  }
  if (!manifest || !Array.isArray(manifest.models)) throw new UsageError(`${file}: no "models" list`);
  return { manifest, root: path.dirname(path.resolve(file)) };
}

function testSetFolders(entry) {
  const sets = entry.test_data?.sets;
  if (Array.isArray(sets) && sets.length) return sets;
  const inputs = (entry.files ?? []).filter((f) => f.role === "test_input").map((f) => path.posix.dirname(f.path));
  return [...new Set(inputs)];
}

async function readTestSets(root, entry) {
  const folders = testSetFolders(entry);
  if (!folders.length) throw new UsageError(`${entry.model}: the manifest lists no test data`);
  const sets = [];
  for (const rel of folders) {
    const dir = path.join(root, rel);
    let names;
    try {
      names = readdirSync(dir);
    } catch {
      throw new UsageError(`${entry.model}: test data folder ${rel} is missing`);
    }
    const pick = (prefix) =>
      names
        .map((n) => [n, new RegExp(`^${prefix}_(\\d+)\\.pb$`).exec(n)])
        .filter(([, m]) => m)
        .sort((a, b) => Number(a[1][1]) - Number(b[1][1]))
        .map(([n]) => n);
    const load = async (n) => {
      try {
        return parseTensorProto(await readFile(path.join(dir, n)));
      } catch (e) {
        throw new UsageError(`${rel}/${n}: ${e.message}`);
      }
    };
    const inputs = await Promise.all(pick("input").map(load));
    const outputs = await Promise.all(pick("output").map(load));
    if (!inputs.length || !outputs.length) throw new UsageError(`${entry.model}: ${rel} has no input_*.pb / output_*.pb`);
    sets.push({ name: path.posix.basename(rel), inputs, outputs });
  }
  return sets;
}

// --- checking -------------------------------------------------------------------------------

function fmt(x) {
  return x === null || x === undefined ? "-" : Number(x).toExponential(2);
}

function firstLine(e) {
  return String(e?.message ?? e).split("\n")[0].slice(0, 300);
}

function baseRecord(runtime, rt, precision, sets, tol) {
  return {
    backend: runtime,
    runtime: RUNTIMES[runtime],
    version: rt.version ?? null,
    provider: null,
    optimization: null,
    reference: "test-data",
    precision,
    batch_sizes: [...new Set(sets.map((s) => s.inputs[0].dims[0]))].sort((a, b) => a - b),
    distributions: sets.map((s) => s.name),
    output: null,
    max_abs_error: null,
    max_rel_error: null,
    mean_abs_error: null,
    p99_abs_error: null,
    cosine_similarity: null,
    rel_l2_error: null,
    top1_agreement: null,
    atol: tol.atol,
    rtol: tol.rtol,
    verdict: "pass",
    failed_check: null,
    reason: null,
    label: rt.label ?? null,
    compute_precision: null,
  };
}

function feedsFor(rt, session, set) {
  const names = session.inputNames;
  if (set.inputs.length !== names.length) {
    return { error: `the model has ${names.length} input(s) ${JSON.stringify(names)}, the test data ${set.inputs.length}` };
  }
  const byName = set.inputs.every((t) => names.includes(t.name));
  const feeds = {};
  set.inputs.forEach((t, i) => {
    feeds[byName ? t.name : names[i]] = new rt.ort.Tensor(t.type, t.data, t.dims);
  });
  return { feeds };
}

/** One model file in one runtime over every test set: a parity record (never throws for a mismatch). */
async function checkModel(runtime, rt, file, sets, tol, threads) {
  const rec = baseRecord(runtime, rt, file.precision, sets, tol);
  if (rt.reason) return { ...rec, verdict: "unavailable", reason: rt.reason };
  const fail = (check, reason, worst = null) => Object.assign(rec, { verdict: "fail", failed_check: check, reason, worst });
  let session;
  try {
    session = await createSession(rt, runtime, file, threads);
  } catch (e) {
    return fail("values", `${RUNTIMES[runtime]} cannot load ${file.path}: ${firstLine(e)}`);
  }
  try {
    const agg = { means: [], worstElement: null };
    for (const set of sets) {
      const what = `${set.name} batch ${set.inputs[0].dims[0]}`;
      const expectedNames = set.outputs.map((t, i) => t.name || session.outputNames[i]);
      if (JSON.stringify(expectedNames) !== JSON.stringify(session.outputNames)) {
        return fail("names", `${what}: output names ${JSON.stringify(session.outputNames)} != expected ${JSON.stringify(expectedNames)}`);
      }
      const { feeds, error } = feedsFor(rt, session, set);
      if (error) return fail("names", `${what}: ${error}`);
      let results;
      try {
        results = await session.run(feeds);
      } catch (e) {
        return fail("values", `${what}: ${RUNTIMES[runtime]} cannot run ${file.path}: ${firstLine(e)}`);
      }
      for (const [i, ref] of set.outputs.entries()) {
        const got = results[expectedNames[i]];
        if (JSON.stringify(got.dims.map(Number)) !== JSON.stringify(ref.dims)) {
          return fail("shapes", `${what}: output ${JSON.stringify(expectedNames[i])} has shape ${JSON.stringify(got.dims)}, expected ${JSON.stringify(ref.dims)}`);
        }
      }
      for (const [i, ref] of set.outputs.entries()) {
        const name = expectedNames[i];
        const m = errorMetrics(results[name].data, ref.data, ref.dims, tol);
        merge(rec, agg, name, m);
        if (!m.pass) {
          const w = m.worst;
          const reason = `${what}: output ${JSON.stringify(name)} differs: max abs error ${fmt(m.max_abs_error)}` +
            (w ? `, worst element [${w.index.join(", ")}] = ${w.actual} (expected ${w.expected})` : "") +
            ` > atol ${tol.atol} + rtol ${tol.rtol} * |reference|`;
          return fail("values", reason, w);
        }
      }
    }
    return rec;
  } finally {
    await session.release?.();
  }
}

function merge(rec, agg, name, m) {
  if (rec.output === null || m.max_abs_error === null || m.max_abs_error >= (rec.max_abs_error ?? 0)) rec.output = name;
  const worse = (a, b) => (a === null || b === null ? null : Math.max(a, b));
  const first = agg.means.length === 0;
  for (const k of ["max_abs_error", "max_rel_error", "p99_abs_error", "rel_l2_error"]) {
    rec[k] = first ? m[k] : worse(rec[k], m[k]);
  }
  rec.cosine_similarity = first ? m.cosine_similarity : Math.min(rec.cosine_similarity, m.cosine_similarity);
  if (m.top1_agreement !== null) {
    rec.top1_agreement = rec.top1_agreement === null ? m.top1_agreement : Math.min(rec.top1_agreement, m.top1_agreement);
  }
  agg.means.push(m.mean_abs_error);
  rec.mean_abs_error = agg.means.includes(null) ? null : agg.means.reduce((a, b) => a + b, 0) / agg.means.length;
}

// --- output ---------------------------------------------------------------------------------

function table(rows) {
  const head = ["model", "runtime", "precision", "file", "verdict", "max abs", "max rel", "top-1", "atol", "rtol"];
  const body = rows.map(({ name, file, rec }) => [
    name, rec.runtime, rec.precision, file, rec.verdict, fmt(rec.max_abs_error), fmt(rec.max_rel_error),
    rec.top1_agreement === null ? "-" : rec.top1_agreement.toFixed(3), String(rec.atol), String(rec.rtol),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
  const line = (r) => r.map((c, i) => c.padEnd(widths[i])).join("  ").trimEnd();
  return [line(head), line(widths.map((w) => "-".repeat(w))), ...body.map(line)].join("\n");
}

async function main(argv) {
  const opts = parseCli(argv);
  if (opts.help) {
    console.log(USAGE);
    return 0;
  }
  if (opts.probe) {
    const rt = await loadRuntime(opts.probe, opts.threads);
    if (rt.reason) {
      console.log(rt.reason);
      return 3;
    }
    console.log(rt.version);
    return 0;
  }

  const { manifest, root } = await readManifest(opts.target);
  const byName = new Map(manifest.models.map((m) => [m.model, m]));
  const names = opts.models ?? [...byName.keys()];
  const unknown = names.filter((n) => !byName.has(n));
  if (unknown.length) throw new UsageError(`not in the manifest: ${unknown.join(", ")} (it has: ${[...byName.keys()].join(", ") || "none"})`);

  // Everything to check, decided (and its tolerances found) before anything runs.
  const work = [];
  for (const name of names) {
    const entry = byName.get(name);
    const files = (entry.files ?? []).filter((f) => f.role === "model" && (!opts.precisions || opts.precisions.includes(f.precision)));
    for (const f of files) {
      if (!opts.tolerances[f.precision]) {
        throw new UsageError(`no tolerance for ${f.precision} (${f.path}): pass --tol ${f.precision}=ATOL,RTOL`);
      }
      if (!existsSync(path.join(root, f.path))) throw new UsageError(`${name}: ${f.path} is missing`);
      // Its external data (if any): listed, beside the model, present.
      f.external = externalDataOf(entry, f.path).map((d) => {
        if (path.posix.dirname(d.path) !== path.posix.dirname(f.path)) throw new UsageError(`${name}: ${d.path} is not beside ${f.path}`);
        if (!existsSync(path.join(root, d.path))) throw new UsageError(`${name}: ${d.path} (external data of ${f.path}) is missing`);
        return d.name;
      });
    }
    work.push({ name, entry, files });
  }

  const runtimes = {};
  for (const r of opts.runtimes) runtimes[r] = await loadRuntime(r, opts.threads);

  const results = {};
  const rows = [];
  for (const { name, entry, files } of work) {
    results[name] = [];
    const sets = await readTestSets(root, entry);
    for (const f of files) {
      const abs = path.join(root, f.path);
      const file = { ...f, abs, bytes: new Uint8Array(await readFile(abs)) };
      for (const r of opts.runtimes) {
        const t0 = performance.now();
        const rec = await checkModel(r, runtimes[r], file, sets, opts.tolerances[f.precision], opts.threads);
        const { worst, ...clean } = rec;
        results[name].push(clean);
        rows.push({ name, file: f.path, rec: clean, worst });
        const secs = ((performance.now() - t0) / 1000).toFixed(1);
        process.stderr.write(`${name} ${f.path} ${RUNTIMES[r]}: ${rec.verdict}, max abs ${fmt(rec.max_abs_error)} (${secs}s)\n`);
      }
    }
  }

  const failed = rows.filter((r) => r.rec.verdict === "fail");
  const unavailable = rows.filter((r) => r.rec.verdict === "unavailable");
  if (opts.json) {
    const rtInfo = Object.fromEntries(Object.entries(runtimes).map(([k, v]) => [k, { runtime: RUNTIMES[k], version: v.version ?? null, reason: v.reason ?? null }]));
    console.log(JSON.stringify({ runtimes: rtInfo, models: results }, null, 1));
  } else {
    console.log(table(rows));
  }
  if (failed.length) {
    // The worst failure first: the value failure with the largest error, else the first failure.
    failed.sort((a, b) => (b.rec.max_abs_error ?? Infinity) - (a.rec.max_abs_error ?? Infinity));
    const w = failed[0];
    process.stderr.write(`FAILED: ${failed.length} of ${rows.length} check(s); worst: ${w.name} ${w.file} ` +
      `${w.rec.runtime} (${w.rec.precision}) ${w.rec.failed_check}: ${w.rec.reason}\n`);
    return 1;
  }
  if (unavailable.length) {
    const reasons = [...new Set(unavailable.map((r) => `${r.rec.runtime}: ${r.rec.reason}`))];
    process.stderr.write(`UNAVAILABLE: ${reasons.join("; ")}\n`);
    return 3;
  }
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => {
    if (e instanceof UsageError) {
      process.stderr.write(`error: ${e.message}\n`);
      process.exitCode = 2;
    } else {
      process.stderr.write(`error: ${e?.stack ?? e}\n`);
      process.exitCode = 4;
    }
  },
);
