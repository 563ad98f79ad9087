"""The model card (``README.md``) of a Hugging Face folder: YAML front matter made with
``huggingface_hub``'s own ``ModelCardData`` / ``EvalResult`` (so the Hub parses what it wrote),
then a short text: what the model is, how to run it, and its parity, accuracy and latency tables."""

from __future__ import annotations

from ..modelinfo import LICENSE_KEY
from .common import ModelFiles


def _hub():
    import huggingface_hub  # the publish extra; the CLI names it when missing (exit 3)

    return huggingface_hub


def _fmt(v, spec: str = ".3g") -> str:
    return "-" if v is None else format(v, spec)


def eval_results(m: ModelFiles, hub) -> list:
    """top-1 per runtime and precision, where measured (the manifest's accuracy records)."""
    out = []
    for r in m.entry.get("accuracy", []):
        if r.get("top1") is None or r.get("backend") == "torch":
            continue
        out.append(hub.EvalResult(
            task_type="tabular-classification", task_name="Vector classification",
            dataset_type=r["dataset"], dataset_name=r["dataset"], dataset_split=r.get("split", "test"),
            metric_type="accuracy", metric_name=f"top-1 ({r['backend']}, {r['precision']})",
            metric_value=round(float(r["top1"]), 6)))
    return out


def front_matter(m: ModelFiles, hub) -> str:
    precisions = [f["precision"] for f in m.models()]
    datasets = sorted({r["dataset"] for r in m.entry.get("accuracy", []) if r.get("dataset")})
    results = eval_results(m, hub)
    license_ = m.meta.get(LICENSE_KEY)
    data = hub.ModelCardData(
        license=license_.lower() if license_ else None,  # the Hub's ids are SPDX ids in lower case
        library_name="onnx",
        tags=["onnx", "dense-efficientnet", m.entry["flavor"], "vector-classification", "zoo", *precisions],
        datasets=datasets or None,
        metrics=["accuracy"] if results else None,
        model_name=m.name,
        eval_results=results or None,
        params=m.entry["params"],
        flops=m.entry["flops"],
        model_version=m.version,
        model_digest=m.digest,
    )
    return data.to_yaml()


def _table(rows: list[list[str]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def body(m: ModelFiles, entry: dict, config: dict, repo_id: str | None) -> str:
    e, name = m.entry, m.name
    repo = repo_id or f"ORG/{name}"
    dim, inp, out = config["input_dim"], config["onnx"]["input_name"], config["onnx"]["output_name"]
    files = config["onnx"]["files"]
    seeded = e.get("weights", {}).get("source") != "file"
    sha = entry["metadata"]["model_sha"]  # of onnx/model.onnx as published here
    parts = [
        f"# {name}",
        f"{m.doc_string or name}. A dense EfficientNet (MBConv blocks with squeeze-excitation for 1-D feature "
        f"vectors, {e['flavor']} flavor) scaled by compound scaling: width {e['scaling']['width']}, depth "
        f"{e['scaling']['depth']}, input width {dim}; {e['params']:,} parameters, {e['flops']:,} FLOPs per sample. "
        f"Input `{inp}` float32 `[batch, {dim}]`, output `{out}` float32 `[batch, {e['num_classes']}]` (logits).",
        "These are **seeded, untrained weights**: the network and its files are verified, its classes mean nothing."
        if seeded else "Trained weights (`model.safetensors`, the same state dict as the ONNX files).",
        f"Release version {m.version}, digest `{m.digest}`. Every file's size and sha256 are in `manifest.json`.",
        "## Files\n\n" + _table([[p, f"`{f}`"] for p, f in files.items()], ["precision", "file"]),
        "## Run it",
        "Python, with the zoo (pulls into a verified cache; pin the commit):\n\n```sh\n"
        f"zoo pull {name} --from https://huggingface.co/{repo}/resolve/COMMIT/\n```\n\n"
        + ("This folder is also the publisher's signed release (TUF metadata in `metadata/`): with their "
           "root metadata, the pull verifies it (python-tuf, the model signature, every file):\n\n```sh\n"
           f"zoo pull {name} --from https://huggingface.co/{repo}/resolve/COMMIT/ --trust root.json\n```\n\n"
           if (config.get("zoo") or {}).get("tuf_metadata") else "") +
        "Python, with ONNX Runtime alone:\n\n```python\nimport numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession(\"onnx/model.onnx\")\n"
        f"print(s.run(None, {{\"{inp}\": np.zeros((2, {dim}), np.float32)}})[0].argmax(1))\n```",
        f"Node.js (the zoo's `examples/node`; `--sha256` refuses other bytes): "
        f"`node examples/node/classify.mjs onnx/model.onnx 4 --sha256 {sha}`\n\n"
        f"Browser (`examples/browser/index.html`, onnxruntime-web): open it with "
        f"`?mirror=https://huggingface.co/{repo}/resolve/COMMIT/&model={name}`\n\n"
        f"C (`examples/c`, ONNX Runtime's C API): "
        f"`examples/c/classify --sha256 {sha} onnx/model.onnx test_data_set_0/input_0.pb`",
    ]
    parity = [[r["backend"], r["precision"], _fmt(r.get("max_abs_error")), _fmt(r.get("cosine_similarity"), ".6f"),
               r["verdict"]] for r in e.get("parity", [])]
    parts.append("## Parity with PyTorch\n\n" + (_table(parity, ["runtime", "precision", "max abs error", "cosine",
                                                                  "verdict"]) if parity else "Not measured in this build."))
    acc = [[r["backend"], r["precision"], r["dataset"], _fmt(r.get("top1"), ".4f"), _fmt(r.get("agreement"), ".4f")]
           for r in e.get("accuracy", [])]
    if acc:
        parts.append("## Accuracy\n\n" + _table(acc, ["runtime", "precision", "dataset", "top-1", "agreement"]))
    lat = [[r["backend"], r["precision"], str(r.get("batch_size")), _fmt(r.get("p50_ms"), ".4g"),
            _fmt(r.get("throughput_sps"), ".4g")] for r in e.get("latency", [])]
    parts.append("## Latency\n\n" + (_table(lat, ["runtime", "precision", "batch", "p50 ms", "samples/s"])
                                     + "\n\nMeasured on the machine that built it; yours will differ."
                                     if lat else "Not measured in this build."))
    return "\n\n".join(parts) + "\n"


def model_card(m: ModelFiles, entry: dict, config: dict, repo_id: str | None = None) -> str:
    hub = _hub()
    return f"---\n{front_matter(m, hub)}\n---\n\n{body(m, entry, config, repo_id)}"
