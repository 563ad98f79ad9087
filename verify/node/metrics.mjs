// Error statistics of an output against its reference: the same definitions as
// verify/parity.py's error_metrics (float64 arithmetic, numpy's linear-interpolation percentile).

// Near-zero references make relative error meaningless; below this the denominator is clamped.
export const REL_ERROR_FLOOR = 1e-3;

function percentile(sorted, q) {
  if (sorted.length === 0) return 0;
  const idx = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(idx);
  const hi = Math.ceil(idx);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (idx - lo);
}

/**
 * @param {ArrayLike<number>} actual
 * @param {ArrayLike<number>} expected same length, row-major, last axis = classes
 * @param {number[]} dims shape of both
 * @param {{atol: number, rtol: number}} tol pass iff |a - b| <= atol + rtol * |b| everywhere
 */
export function errorMetrics(actual, expected, dims, tol) {
  const n = expected.length;
  if (n === 0) {
    return { max_abs_error: 0, max_rel_error: 0, mean_abs_error: 0, p99_abs_error: 0, cosine_similarity: 1,
      rel_l2_error: 0, top1_agreement: null, pass: true, worst: null };
  }
  const diffs = new Float64Array(n);
  let finite = true;
  let maxAbs = 0, maxRel = 0, sumAbs = 0, dot = 0, na2 = 0, nb2 = 0, d2 = 0;
  let worst = null; // the element furthest outside the tolerance (or the largest error when all pass)
  let worstExcess = -Infinity;
  let allWithin = true;
  for (let i = 0; i < n; i++) {
    const a = Number(actual[i]);
    const b = Number(expected[i]);
    if (!Number.isFinite(a)) finite = false;
    const d = Math.abs(a - b);
    diffs[i] = d;
    const bound = tol.atol + tol.rtol * Math.abs(b);
    if (!(d <= bound)) allWithin = false;
    const excess = Number.isNaN(d) ? Infinity : d - bound;
    if (excess > worstExcess) {
      worstExcess = excess;
      worst = { index: i, actual: a, expected: b, abs_error: d };
    }
    if (d > maxAbs) maxAbs = d;
    const rel = d / Math.max(Math.abs(b), REL_ERROR_FLOOR);
    if (rel > maxRel) maxRel = rel;
    sumAbs += d;
    dot += a * b;
    na2 += a * a;
    nb2 += b * b;
    d2 += (a - b) * (a - b);
  }
  const na = Math.sqrt(na2);
  const nb = Math.sqrt(nb2);
  let top1 = null;
  const classes = dims.length >= 2 ? dims[dims.length - 1] : 0;
  if (classes > 1) {
    const rows = n / classes;
    let agree = 0;
    for (let r = 0; r < rows; r++) {
      let ia = 0, ib = 0;
      for (let c = 1; c < classes; c++) {
        const k = r * classes + c;
        if (actual[k] > actual[r * classes + ia]) ia = c;
        if (expected[k] > expected[r * classes + ib]) ib = c;
      }
      if (ia === ib) agree++;
    }
    top1 = agree / rows;
  }
  if (worst) worst.index = unravel(worst.index, dims);
  if (!finite) {
    // JSON has no Infinity: non-finite statistics are reported as null, with pass false.
    return { max_abs_error: null, max_rel_error: null, mean_abs_error: null, p99_abs_error: null,
      cosine_similarity: 0, rel_l2_error: null, top1_agreement: top1, pass: false, worst };
  }
  const sorted = diffs.slice().sort();
  return {
    max_abs_error: maxAbs,
    max_rel_error: maxRel,
    mean_abs_error: sumAbs / n,
    p99_abs_error: percentile(sorted, 99),
    cosine_similarity: na > 0 && nb > 0 ? dot / (na * nb) : (na === nb ? 1 : 0),
    rel_l2_error: nb > 0 ? Math.sqrt(d2) / nb : (na === 0 ? 0 : null),
    top1_agreement: top1,
    pass: allWithin,
    worst,
  };
}

function unravel(flat, dims) {
  const idx = new Array(dims.length).fill(0);
  for (let k = dims.length - 1; k >= 0; k--) {
    idx[k] = flat % dims[k];
    flat = Math.floor(flat / dims[k]);
  }
  return idx;
}
