// Run in this folder's older onnxruntime-node / onnxruntime-web (wasm):
//   node run.mjs node|web JOB.json
// Loads each model file of the job, runs each case, writes the outputs; the zoo compares them
// (zoo.verify.old, the same job format as verify/old_ort_child.py). Inputs and outputs are raw
// little-endian float32. Prints one JSON line: {runtime, version, models: {key: {loaded, error,
// outputs: {case: {path, shape}}}}}.

import { readFile, writeFile } from "node:fs/promises";

const [runtime, jobPath] = process.argv.slice(2);
if (!["node", "web"].includes(runtime) || !jobPath) {
  console.error("usage: node run.mjs node|web JOB.json");
  process.exit(2);
}
const pkg = `onnxruntime-${runtime}`;
// Read directly: onnxruntime-web's "exports" do not offer its package.json.
const version = JSON.parse(await readFile(new URL(`./node_modules/${pkg}/package.json`, import.meta.url), "utf8")).version;
const mod = await import(pkg);
const ort = mod.env ? mod : mod.default; // 1.16 is CommonJS: its API is the default export
const options = { logSeverityLevel: 3 };
if (runtime === "web") {
  ort.env.wasm.numThreads = 1;
  options.executionProviders = ["wasm"];
} else {
  options.executionProviders = ["cpu"];
  options.intraOpNumThreads = 1;
}
const job = JSON.parse(await readFile(jobPath, "utf8"));
const result = { runtime: pkg, version, models: {} };
for (const [key, file] of Object.entries(job.models)) {
  const rec = { loaded: false, error: null, outputs: {} };
  result.models[key] = rec;
  let session;
  try {
    session = await ort.InferenceSession.create(new Uint8Array(await readFile(file)), options);
  } catch (e) {
    const msg = String(e?.message ?? e);
    // onnxruntime-web 1.16's wasm build throws a bare number (an exception pointer) when it refuses a model.
    rec.error = /^\d+$/.test(msg) ? `${pkg} ${version} refused the model (a WebAssembly exception without a message: ${msg})`
      : msg.slice(0, 400);
    continue;
  }
  rec.loaded = true;
  for (const [ckey, c] of Object.entries(job.cases)) {
    const buf = await readFile(c.input);
    const data = new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
    try {
      const out = await session.run({ [job.input_name]: new ort.Tensor("float32", data, c.shape) });
      const y = out[session.outputNames[0]];
      const path = `${job.out_dir}/${key}.${ckey}.bin`;
      await writeFile(path, Buffer.from(y.data.buffer, y.data.byteOffset, y.data.byteLength));
      rec.outputs[ckey] = { path, shape: y.dims.map(Number) };
    } catch (e) {
      rec.error = `case ${ckey}: ${String(e?.message ?? e).slice(0, 400)}`;
      break;
    }
  }
  await session.release?.();
}
console.log(JSON.stringify(result));
