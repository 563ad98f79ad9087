"""The steps ``zoo build`` runs on each model after export and self-check: the parity matrix, the
int8/fp16 variants, the JavaScript runtimes, the C / C++ examples, and a short latency run.

A step (an "extra") is ``extra(artifact, entry, staged files, progress)``: it may add files to
``staged`` and records to ``entry``, and raises a ``ZooError`` to fail the model.
"""

from __future__ import annotations

import contextlib

from .. import onnxio
from ..bench.latency import SHORT, LatencyOptions, measure_model, upsert_latency
from ..exporters.variants import variant_bytes, variant_layout
from ..spec import EXTERNAL_ROLE, FILE_PRECISIONS, RECOMMEND_PRECISIONS, check_precision, variant_path
from ..units import human_bytes
from .artifact import file_record
from ..verify.variants import check_variant


def default_verifier():
    from ..verify.matrix import build_verifier

    return build_verifier()


def runtime_reasons() -> dict[str, str | None]:
    """Why each independent, JavaScript and C / C++ runtime cannot be used here (None where it can)."""
    from ..verify.backends import RUNTIME_BACKENDS
    from ..verify.c import RUNTIMES as C_RUNTIMES
    from ..verify.c import c_available
    from ..verify.js import RUNTIMES as JS_RUNTIMES
    from ..verify.js import js_available

    reasons = {name: cls().unavailable_reason() for name, cls in RUNTIME_BACKENDS.items()}
    reasons.update({name: js_available(name) for name in JS_RUNTIMES})
    reasons.update({name: c_available(name) for name in C_RUNTIMES})
    return reasons


def default_extras(precisions=("fp32",), bench: bool = True, verify: bool = True, js_runtimes=(),
                   c_runtimes=(), min_agreement: float | None = None, opsets=(), ort: bool = False,
                   profile: bool = False, quant_budget: float | None = None) -> list:
    """The int8/fp16/int8_static/int4 variants asked for (with their parity records; searched where
    a training split is available), the targets for older and smaller runtimes (``opsets``, ``ort``;
    :mod:`zoo.builder.targets`), the JavaScript runtimes named in ``js_runtimes`` and the C / C++
    examples named in ``c_runtimes`` (every precision), then a short latency run, and with ``profile``
    the deployment profile."""
    extras = []
    if any(p != "fp32" for p in precisions):
        extras.append(precision_extra(precisions, verify=verify, min_agreement=min_agreement,
                                      quant_budget=quant_budget))
    if opsets or ort:
        from .targets import targets_extra

        extras.append(targets_extra(tuple(opsets), ort, verify=verify))
        if verify:  # the question the targets answer: which file each older runtime loads (zoo.verify.old)
            from ..verify.old import old_runtimes_extra

            extras.append(old_runtimes_extra())
    if verify and js_runtimes:
        from ..verify.js import build_extra

        extras.append(build_extra(js_runtimes))
    if verify and c_runtimes:
        from ..verify.c import build_extra as c_build_extra

        extras.append(c_build_extra(c_runtimes))
    extras.append(accuracy_extra(verify=verify, js_runtimes=js_runtimes if verify else (), min_agreement=min_agreement))
    if bench:
        extras.append(latency_extra(precisions))
    if profile:  # last: it reads every record made above (zoo.builder.profile)
        from .profile import profile_extra

        extras.append(profile_extra())
    return extras


def precision_extra(precisions, *, verify: bool = True, matrix_options=None, min_agreement: float | None = None,
                    quant_budget: float | None = None):
    """A ``zoo build`` extra that adds the int8/fp16 (and int8_static/int4) files of each model,
    with parity records.

    Where the model has a training split (trained weights with their record, or ``--eval-data``),
    int8, int8_static and int4 come from the accuracy-driven search
    (:func:`zoo.exporters.quant_search.search`, ``min_agreement`` its floor, ``quant_budget`` its
    seconds per precision), whose record goes into the entry's ``quantization``; without one, int8
    is the fixed recipe and int8_static/int4 cannot be made (CalibrationError).

    Each int8/fp16 variant is checked against the fp32 PyTorch model with ``verify.matrix.run_matrix``
    (ONNX Runtime CPU at both optimisation levels, plus GPU providers when present); a failed
    record, a cosine similarity under :data:`MIN_COSINE` or a relative L2 error over
    :data:`MAX_REL_L2` fails the model with its typed error. With ``verify=False``
    (``zoo build --no-verify``) the same bounds are checked on the CPU provider, one seeded batch.
    int8_static and int4 are judged by the accuracy gate alone: random inputs say nothing about a
    calibrated or 4-bit file (as ``zoo verify`` treats them).
    """
    variants = [p for p in precisions if check_precision(p, FILE_PRECISIONS) != "fp32"]

    def extra(art, entry: dict, staged: dict, progress) -> None:
        for p in variants:
            path = variant_path(art.request.name, p)
            data = searched(art, entry, p, path, min_agreement, quant_budget, progress)
            if data is None:
                progress(f"{p}: converting ...")
                data = variant_bytes(art.model_ref, p)
            records = [] if p in RECOMMEND_PRECISIONS else check_variant(
                art, data, p, verify=verify, matrix_options=matrix_options, progress=progress)
            for rel, b in variant_layout(data, path, art.request.spec.external_data).items():
                staged[rel] = b
                entry["files"].append(file_record(rel, b, "model" if rel == path else EXTERNAL_ROLE, p))
            entry["parity"].extend(records)
            progress(f"{p}: {human_bytes(len(data))} ({len(data) / art.model_size:.0%} of fp32)")

    return extra


def searched(art, entry: dict, precision: str, path: str, min_agreement: float | None, budget: float | None,
             progress) -> bytes | None:
    """The searched file of ``precision`` (its record appended to ``entry["quantization"]``), or None
    where the fixed recipe applies (fp16, or no training split for int8)."""
    from ..errors import CalibrationError
    from ..exporters import quant_search as qs
    from ..verify.accuracy import MAX_VARIANT_LOSS, MIN_AGREEMENT

    evals = art.eval_set
    if precision not in qs.SEARCHED:
        return None
    if evals is None or evals.x_train is None:
        if precision == "int8":
            return None
        raise CalibrationError(f"{art.request.name}: {precision} needs the reference task's training split (build "
                               f"from trained weights with their .train.json, or give --eval-data FILE.npz)")
    why = qs.too_few_rows(evals.x_train, evals.y_train)
    if why is not None:
        progress(f"{precision}: the fixed recipe, no search ({why})")
        if precision == "int8":
            return None
        from ..exporters.int4 import quantize_int4
        from ..exporters.int8_static import quantize_int8_static

        return (quantize_int8_static(art.model_ref, evals.x_train, input_name=art.request.spec.input_name,
                                     what=art.request.name) if precision == "int8_static" else quantize_int4(art.model_ref))
    res = qs.search(art.model_ref, precision, evals.x_train, evals.y_train,
                    min_agreement=MIN_AGREEMENT if min_agreement is None else min_agreement,
                    max_top1_loss=MAX_VARIANT_LOSS, budget_s=qs.DEFAULT_BUDGET_S if budget is None else budget,
                    input_name=art.request.spec.input_name, what=art.request.name, progress=progress)
    entry.setdefault("quantization", []).append(res.record(path))
    return res.data


def latency_extra(precisions, *, providers: list[str] | None = None, options: LatencyOptions = SHORT):
    """A ``zoo build`` extra: a short latency run of every model file of ``precisions`` just built."""

    def extra(art, entry: dict, staged: dict, progress) -> None:
        cache: dict = {}
        for f in entry["files"]:
            if f["role"] != "model" or f["precision"] not in precisions:
                continue
            with onnxio.file_ref(staged, f["path"]) as ref:
                recs = measure_model(ref, precision=f["precision"], flops=art.flops,
                                     input_dim=art.request.effective_input_dim, torch_model=art.model,
                                     providers=providers, options=options, input_name=art.request.spec.input_name,
                                     torch_cache=cache, progress=progress)
            entry["latency"] = upsert_latency(entry.get("latency", []), recs)

    return extra


def accuracy_extra(*, verify: bool = True, backends=None, js_runtimes=(), min_agreement: float | None = None):
    """A ``zoo build`` extra for models with an evaluation set (``--eval-data``, or the training
    record beside ``--weights``): top-1 of PyTorch and of every model file on every backend
    (ONNX Runtime CPU, GPU providers when present, and with ``verify`` the independent and the
    JavaScript runtimes),
    written as ``accuracy`` records; the accuracy gate (top-1, and agreement with PyTorch's classes of at
    least ``min_agreement``, default :data:`zoo.verify.accuracy.MIN_AGREEMENT`) fails the model. A no-op
    for seeded models."""

    def extra(art, entry: dict, staged: dict, progress) -> None:
        if art.eval_set is None:
            return
        from ..verify.accuracy import MIN_AGREEMENT, JsBackend, measure, raise_for_accuracy
        from ..verify.backends import provider_backends, runtime_backends

        use = backends if backends is not None else (
            provider_backends(None, opt_levels=("all",)) + (runtime_backends(None) if verify else [])
            + [JsBackend(r) for r in js_runtimes])
        spec = art.request.spec
        with contextlib.ExitStack() as stack:
            files = {f["path"]: (f["precision"], stack.enter_context(onnxio.file_ref(staged, f["path"])))
                     for f in entry["files"] if f["role"] == "model"}
            entry["accuracy"] = measure(art.model, files, art.eval_set, use, input_name=spec.input_name,
                                        output_name=spec.output_name, progress=progress,
                                        min_agreement=MIN_AGREEMENT if min_agreement is None else min_agreement)
        raise_for_accuracy(entry["accuracy"], art.request.name)

    return extra
