"""Run in an older onnxruntime's own virtual environment (``.venv-ort116/bin/python THIS JOB.json``):
load each model file, run each case, write the outputs. Needs only onnxruntime and numpy (nothing
of the zoo, whose toolchain that environment lacks); the zoo compares the outputs (zoo.verify.old).

The job (JSON): ``{"input_name", "models": {key: path}, "cases": {key: {"input": path, "shape"}},
"out_dir"}``; inputs are raw little-endian float32. Prints one JSON line: ``{"runtime",
"version", "models": {key: {"loaded", "error", "outputs": {case: {"path", "shape"}}}}}``.
"""

import json
import os
import sys


def main(job_path: str) -> int:
    import numpy as np
    import onnxruntime as ort

    job = json.load(open(job_path, encoding="utf-8"))
    result = {"runtime": "onnxruntime", "version": ort.__version__, "models": {}}
    for key, path in job["models"].items():
        rec = {"loaded": False, "error": None, "outputs": {}}
        result["models"][key] = rec
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.intra_op_num_threads = 1
        try:
            with open(path, "rb") as fh:  # bytes: onnxruntime tells the ORT format from ONNX by their header
                sess = ort.InferenceSession(fh.read(), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - what the old runtime says is the record
            rec["error"] = f"{type(e).__name__}: {str(e).strip()[:400]}"
            continue
        rec["loaded"] = True
        for ckey, case in job["cases"].items():
            x = np.fromfile(case["input"], dtype="<f4").reshape(case["shape"])
            try:
                y = sess.run(None, {job["input_name"]: x})[0]
            except Exception as e:  # noqa: BLE001
                rec["error"] = f"case {ckey}: {type(e).__name__}: {str(e).strip()[:400]}"
                break
            out = os.path.join(job["out_dir"], f"{key}.{ckey}.bin")
            np.ascontiguousarray(y, dtype="<f4").tofile(out)
            rec["outputs"][ckey] = {"path": out, "shape": list(y.shape)}
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
