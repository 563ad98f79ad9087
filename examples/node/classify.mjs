// Classify a batch of feature vectors with a zoo model in Node.js (onnxruntime-node).
//
//   ONNXRUNTIME_NODE_INSTALL=skip npm ci     # in this folder: the locked onnxruntime-node, CPU only
//   node classify.mjs MODEL.onnx [BATCH] [--sha256 HEX]
//
// --sha256 HEX pins the model file: its sha256 is computed (node:crypto, read as a stream) before
// ONNX Runtime sees it, and other bytes are refused (one line on stderr, exit 1). For a model saved
// with external data this pins the .onnx file, not FILE.data beside it.
// Exit status: 0 ran, 1 the sha256 differs or the model cannot run, 2 bad usage or a missing file.
import { createHash } from "node:crypto";
import { createReadStream, statSync } from "node:fs";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";

const USAGE = "usage: node classify.mjs MODEL.onnx [BATCH] [--sha256 HEX]";

function fail(code, message) {
  console.error(`error: ${message}`);
  process.exit(code);
}

let args;
try {
  args = parseArgs({ allowPositionals: true, options: { sha256: { type: "string" } } });
} catch (e) {
  fail(2, `${e.message}; ${USAGE}`);
}
const [modelPath, batchArg = "4", ...extra] = args.positionals;
const batch = Number(batchArg);
if (!modelPath || extra.length || !Number.isInteger(batch) || batch < 1) fail(2, USAGE);
const pinned = args.values.sha256?.toLowerCase();
if (pinned !== undefined && !/^[0-9a-f]{64}$/.test(pinned)) fail(2, `--sha256 ${args.values.sha256}: expected 64 hex digits`);

async function sha256File(path) {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(path)) hash.update(chunk);
  return hash.digest("hex");
}

try {
  if (!statSync(modelPath).isFile()) fail(2, `${modelPath} is not a file`);
} catch (e) {
  fail(2, `cannot open ${modelPath}: ${e.code ?? e.message}`);
}
if (pinned !== undefined) {
  let got;
  try {
    got = await sha256File(modelPath);
  } catch (e) {
    fail(2, `cannot read ${modelPath}: ${e.code ?? e.message}`);
  }
  if (got !== pinned) fail(1, `${modelPath}: sha256 ${got} differs from the pinned ${pinned}; not loaded`);
}

let session;
try {
  session = await ort.InferenceSession.create(modelPath, { executionProviders: ["cpu"] });
} catch (e) {
  fail(1, `ONNX Runtime cannot load ${modelPath}: ${String(e.message ?? e).split("\n")[0]}`);
}
const input = session.inputMetadata[0]; // shape ["batch", input_dim]: any batch size works
const dim = input.shape[1];

// Your features go here: BATCH rows of `dim` float32 values, row after row.
const features = Float32Array.from({ length: batch * dim }, (_, i) => Math.sin(i + 1));

const feeds = { [input.name]: new ort.Tensor("float32", features, [batch, dim]) };
const logits = (await session.run(feeds))[session.outputNames[0]];
const classes = logits.dims[1];
for (let row = 0; row < batch; row++) {
  const scores = logits.data.subarray(row * classes, (row + 1) * classes);
  let top = 0;
  for (let c = 1; c < classes; c++) if (scores[c] > scores[top]) top = c;
  console.log(`row ${row}: class ${top} (logit ${scores[top].toFixed(4)})`);
}
