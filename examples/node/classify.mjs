// Classify a batch of feature vectors with a zoo model in Node.js (onnxruntime-node).
//
//   ONNXRUNTIME_NODE_INSTALL=skip npm ci     # in this folder: the locked onnxruntime-node, CPU only
//   node classify.mjs MODEL.onnx [BATCH] [--sha256 HEX]
//   node classify.mjs --profile NAME/profile.json [BATCH]
//
// --profile follows the model's deployment profile (zoo build --profile, zoo bench --recommend):
// its entry for this onnxruntime-node (same major.minor version), of BATCH or of any batch size,
// names the file (beside the profile), its sha256 (pinned, as with --sha256) and the session
// settings (threads, graph optimisation level) to use. The file chosen is named on stderr.
//
// --sha256 HEX pins the model file: its sha256 is computed (node:crypto, read as a stream) before
// ONNX Runtime sees it, and other bytes are refused (one line on stderr, exit 1). For a model saved
// with external data this pins the .onnx file, not FILE.data beside it.
// Exit status: 0 ran, 1 the sha256 differs or the model cannot run, 2 bad usage or a missing file.
import { createHash } from "node:crypto";
import { createReadStream, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { parseArgs } from "node:util";
import ort from "onnxruntime-node";

const USAGE = "usage: node classify.mjs MODEL.onnx [BATCH] [--sha256 HEX] | node classify.mjs --profile PROFILE.json [BATCH]";

function fail(code, message) {
  console.error(`error: ${message}`);
  process.exit(code);
}

let args;
try {
  args = parseArgs({ allowPositionals: true, options: { sha256: { type: "string" }, profile: { type: "string" } } });
} catch (e) {
  fail(2, `${e.message}; ${USAGE}`);
}
const profilePath = args.values.profile;
if (profilePath !== undefined && args.values.sha256 !== undefined) fail(2, "--profile pins the file itself; give --profile or --sha256");
const positionals = profilePath === undefined ? args.positionals : [null, ...args.positionals];
let [modelPath, batchArg = "4", ...extra] = positionals;
const batch = Number(batchArg);
if ((!modelPath && profilePath === undefined) || extra.length || !Number.isInteger(batch) || batch < 1) fail(2, USAGE);
let pinned = args.values.sha256?.toLowerCase();
if (pinned !== undefined && !/^[0-9a-f]{64}$/.test(pinned)) fail(2, `--sha256 ${args.values.sha256}: expected 64 hex digits`);
const sessionOptions = { executionProviders: ["cpu"] };
let profileWidth;

// The profile's entry for this runtime: same major.minor version, then BATCH, else any batch size.
if (profilePath !== undefined) {
  const runtime = "onnxruntime-node";
  const version = ort.env.versions.node;
  const minor = (v) => String(v ?? "").split(".").slice(0, 2).join(".");
  let profile;
  try {
    profile = JSON.parse(readFileSync(profilePath, "utf8"));
  } catch (e) {
    fail(2, `cannot read the profile ${profilePath}: ${e.code ?? e.message}`);
  }
  const mine = (Array.isArray(profile?.entries) ? profile.entries : []).filter((e) => e?.runtime === runtime);
  const rows = mine.filter((e) => minor(e.version) === minor(version));
  const row = rows.find((e) => e.batch_size === batch) ?? rows.find((e) => e.batch_size === null);
  if (!row) {
    const have = [...new Set(mine.map((e) => e.version))].join(", ") || "none";
    fail(1, `${profilePath} has no file for ${runtime} ${version} (it has ${runtime} versions: ${have})`);
  }
  // Only a file beside the profile: never a path that leaves its folder.
  if (typeof row.file !== "string" || !/^[A-Za-z0-9_.-]+$/.test(row.file) || row.file.startsWith(".")) {
    fail(2, `${profilePath}: file ${JSON.stringify(row.file)} is not a file name beside the profile`);
  }
  if (!/^[0-9a-f]{64}$/.test(row.sha256 ?? "")) fail(2, `${profilePath}: ${row.file} has no sha256`);
  modelPath = path.join(path.dirname(profilePath), row.file);
  profileWidth = profile.input?.width;
  pinned = row.sha256;
  const settings = row.settings ?? {};
  if (Number.isInteger(settings.threads) && settings.threads > 0) sessionOptions.intraOpNumThreads = settings.threads;
  if (["disabled", "basic", "extended", "all"].includes(settings.graph_optimization_level)) {
    sessionOptions.graphOptimizationLevel = settings.graph_optimization_level;
  }
  console.error(`profile: ${row.file} (sha256 ${row.sha256.slice(0, 12)}...) for ${runtime} ${version}, ` +
    `batch ${row.batch_size ?? "any"}, threads ${settings.threads ?? "default"}, ` +
    `graph optimisation ${settings.graph_optimization_level ?? "default"}`);
}

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
  session = await ort.InferenceSession.create(modelPath, sessionOptions);
} catch (e) {
  fail(1, `ONNX Runtime cannot load ${modelPath}: ${String(e.message ?? e).split("\n")[0]}`);
}
// The input's name and width: from session.inputMetadata (shape ["batch", input_dim]: any batch size
// works), or, in an onnxruntime-node older than 1.19 that has none, from the profile.
const input = session.inputMetadata?.[0] ?? { name: session.inputNames[0], shape: [null, profileWidth] };
const dim = input.shape[1];
if (!Number.isInteger(dim)) fail(1, `this onnxruntime-node does not tell the input width; give --profile`);

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
