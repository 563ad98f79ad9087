// Classify a batch of feature vectors with a zoo model in Node.js (onnxruntime-node).
//
//   npm install                           # in this folder (see README: ONNXRUNTIME_NODE_INSTALL=skip)
//   zoo pull dense_b0 --from MIRROR_URL   # prints where the model is
//   node classify.mjs ~/.cache/zoo/models/dense_b0/dense_b0/model.onnx [BATCH]
import ort from "onnxruntime-node";

const [modelPath, batchArg = "4"] = process.argv.slice(2);
const batch = Number(batchArg);
if (!modelPath || !Number.isInteger(batch) || batch < 1) {
  console.error("usage: node classify.mjs MODEL.onnx [BATCH]");
  process.exit(2);
}

const session = await ort.InferenceSession.create(modelPath, { executionProviders: ["cpu"] });
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
