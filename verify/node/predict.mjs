#!/usr/bin/env node
// Run one model over one input tensor in onnxruntime-node or onnxruntime-web (wasm) and print its
// outputs as JSON: what the zoo's accuracy records need from the JavaScript runtimes.
//
// usage: node predict.mjs --runtime node|web [--threads N] [--chunk ROWS] [--external-data NAME ...] MODEL.onnx INPUT.pb
//        (NAME: a file of the model's external data, beside MODEL.onnx)
// stdout: {"version": "...", "output": NAME, "dims": [n, k], "data": [...]} (row-major float32 values)
// exit status: 0 ok; 2 bad arguments or input; 3 the runtime is unavailable; 4 an internal error.

import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";

import path from "node:path";

import { parseTensorProto } from "./tensorproto.mjs";
import { openSession } from "./session.mjs";

const RUNTIMES = { node: "onnxruntime-node", web: "onnxruntime-web" };

async function main(argv) {
  const { values, positionals } = parseArgs({
    args: argv, allowPositionals: true,
    options: { runtime: { type: "string" }, threads: { type: "string", default: "1" }, chunk: { type: "string", default: "1000" },
               "external-data": { type: "string", multiple: true, default: [] } },
  });
  const pkg = RUNTIMES[values.runtime];
  const threads = Number(values.threads);
  const chunk = Number(values.chunk);
  if (!pkg || positionals.length !== 2 || !(threads >= 1) || !(chunk >= 1)) {
    process.stderr.write("error: usage: node predict.mjs --runtime node|web [--threads N] [--chunk ROWS] MODEL INPUT.pb\n");
    return 2;
  }
  let ort;
  try {
    ort = await import(pkg);
  } catch (e) {
    process.stderr.write(`UNAVAILABLE: ${pkg} cannot be loaded (${String(e).split("\n")[0]})\n`);
    return 3;
  }
  ort = ort.default ?? ort;
  const options = { graphOptimizationLevel: "all", logSeverityLevel: 3 };
  if (values.runtime === "node") {
    Object.assign(options, { executionProviders: ["cpu"], intraOpNumThreads: threads, interOpNumThreads: 1 });
  } else {
    ort.env.wasm.numThreads = threads;
    ort.env.logLevel = "error";
    options.executionProviders = ["wasm"];
  }
  const [modelPath, inputPath] = positionals;
  const external = values["external-data"];
  if (external.some((n) => path.basename(n) !== n)) {
    process.stderr.write("error: --external-data names a file beside the model (no folders)\n");
    return 2;
  }
  const session = await openSession(ort, values.runtime, path.resolve(modelPath), external, options);
  const x = parseTensorProto(await readFile(inputPath));
  if (x.dims.length !== 2) {
    process.stderr.write(`error: the input must be [n, features], got ${JSON.stringify(x.dims)}\n`);
    return 2;
  }
  const [n, d] = x.dims.map(Number);
  const outName = session.outputNames[0];
  const data = [];
  let k = 0;
  for (let i = 0; i < n; i += chunk) {
    const rows = Math.min(chunk, n - i);
    const feeds = { [session.inputNames[0]]: new ort.Tensor(x.type, x.data.subarray(i * d, (i + rows) * d), [rows, d]) };
    const out = (await session.run(feeds))[outName];
    k = Number(out.dims[1]);
    for (const v of out.data) data.push(Number(v));
  }
  const version = `node ${process.version}, ${pkg} ${ort.env?.versions?.[values.runtime] ?? "unknown"}`;
  process.stdout.write(JSON.stringify({ version, output: outName, dims: [n, k], data }));
  return 0;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => { process.stderr.write(`error: ${e?.stack ?? e}\n`); process.exitCode = 4; },
);
