// Open an InferenceSession on a zoo model file in onnxruntime-node or onnxruntime-web, external
// data included: a model saved with external data keeps its tensors in files beside it (role
// external_data in the manifest, "of" naming the model file).
//
// onnxruntime-node is given the model's path, so that ONNX Runtime reads the data files from beside
// it as the C API does; onnxruntime-web (wasm) has no file system and is given the model's bytes and
// every data file's bytes under the name the model refers to (the externalData session option).

import { readFile } from "node:fs/promises";
import path from "node:path";

/** The external-data files of one model file: [{path (relative, as listed), name (beside the model)}]. */
export function externalDataOf(entry, modelPath) {
  return (entry.files ?? [])
    .filter((f) => f.role === "external_data" && f.of === modelPath)
    .map((f) => ({ path: f.path, name: path.posix.basename(f.path) }));
}

/**
 * An InferenceSession on the model at `modelFile` (an absolute path) whose data files are `external`
 * (names beside it); `bytes` are the model file's bytes if already read.
 */
export async function openSession(ort, runtime, modelFile, external, options, bytes = null) {
  if (runtime === "node") {
    return ort.InferenceSession.create(external.length ? modelFile : (bytes ?? await readFile(modelFile)), options);
  }
  const dir = path.dirname(modelFile);
  const externalData = await Promise.all(external.map(async (name) => ({
    path: name, data: new Uint8Array(await readFile(path.join(dir, name))),
  })));
  const model = bytes ?? new Uint8Array(await readFile(modelFile));
  return ort.InferenceSession.create(model, externalData.length ? { ...options, externalData } : options);
}
