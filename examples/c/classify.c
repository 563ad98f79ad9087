/*
 * classify.c: run a zoo model with ONNX Runtime's C API, and check it against its test data.
 *
 *   classify MODEL.onnx                      print the model's inputs and outputs
 *   classify MODEL.onnx INPUT.pb             ... run it on a TensorProto, print the top class per row
 *   classify MODEL.onnx INPUT.pb --expect OUTPUT.pb --atol 1e-4 --rtol 1e-3 [--json]
 *                                            ... and compare with the expected output:
 *                                            |actual - expected| <= atol + rtol * |expected|
 *   classify MODEL.onnx INPUT.pb --sha256 HEX
 *                                            ... only if the model file's sha256 is HEX (a pin)
 *
 * C11, ONNX Runtime's C API, and OpenSSL's libcrypto (EVP) for the sha256 of --sha256. INPUT.pb / OUTPUT.pb are ONNX TensorProto files, as in the
 * zoo's test_data_set_N folders, read by the small protobuf reader below (float32 tensors only;
 * anything else is refused, never guessed at).
 *
 * Exit status (the same meanings as verify/node/verify.mjs): 0 ran (and every check passed),
 * 1 a check failed (or the model's sha256 differs from --sha256), 2 bad input (usage, a missing or unreadable file, a .pb this reader refuses,
 * an input that does not fit the model), 3 ONNX Runtime unavailable (too old for these headers,
 * cannot start), 4 internal error. Every error is one line on stderr.
 */

#include <cjson/cJSON.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <onnxruntime_c_api.h>
#include <openssl/evp.h>

enum { EXIT_PASS = 0, EXIT_CHECK = 1, EXIT_USAGE = 2, EXIT_UNAVAILABLE = 3, EXIT_INTERNAL = 4 };

#define MAX_DIMS 16
/* Near-zero references make relative error meaningless; below this the denominator is clamped
 * (verify/parity.py's REL_ERROR_FLOOR). */
#define REL_ERROR_FLOOR 1e-3

static const char USAGE[] =
    "usage: classify [options] MODEL.onnx [INPUT.pb]\n"
    "       classify [options] --profile NAME/profile.json [INPUT.pb]\n"
    "\n"
    "Prints the model's inputs and outputs; with INPUT.pb (an ONNX TensorProto, float32) runs the\n"
    "model on it and prints the top class of each row.\n"
    "\n"
    "options:\n"
    "  --expect OUTPUT.pb  compare output i with the i-th --expect file (repeat per output):\n"
    "                      names, then shapes, then |actual - expected| <= atol + rtol * |expected|\n"
    "  --atol X, --rtol X  the tolerances (required with --expect; no defaults)\n"
    "  --threads N         intra-op threads (default 1)\n"
    "  --sha256 HEX        load the model only if its file's sha256 is HEX (64 hex digits);\n"
    "                      other bytes are refused (exit 1) before ONNX Runtime reads them.\n"
    "                      With external data, this pins the .onnx file, not FILE.data\n"
    "  --profile FILE      follow the model's deployment profile (zoo build --profile): its entry\n"
    "                      for this ONNX Runtime (runtime onnxruntime, same major.minor version)\n"
    "                      and INPUT's batch size (else any) names the model file beside it, its\n"
    "                      sha256 (pinned, as --sha256) and the threads and graph optimisation\n"
    "                      level to use (--threads still wins); cJSON reads it\n"
    "  --json              print one JSON line on stdout instead of text\n"
    "  --version           print the ONNX Runtime version and exit\n"
    "  -h, --help          show this help\n"
    "\n"
    "exit status: 0 ran / all checks passed, 1 a check failed or the sha256 differs, 2 bad input,\n"
    "3 ONNX Runtime unavailable, 4 internal error\n";

static const OrtApi *ort;

/* ---- errors: exactly one line on stderr ----------------------------------------------------- */

static void one_line(const char *prefix, const char *fmt, va_list ap) {
    char buf[1024];
    vsnprintf(buf, sizeof buf, fmt, ap);
    for (char *p = buf; *p; p++) {
        if (*p == '\n' || *p == '\r') *p = ' ';
    }
    fprintf(stderr, "%s%s\n", prefix, buf);
}

static int fail(int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    one_line("error: ", fmt, ap);
    va_end(ap);
    return code;
}

/* An OrtStatus that is not NULL: report it (one line), release it, and give the exit status. */
static int ort_fail(OrtStatus *status, int code, const char *what) {
    fail(code, "%s: %s", what, ort->GetErrorMessage(status));
    ort->ReleaseStatus(status);
    return code;
}

/* Every OrtStatus is checked: on failure, report, set rc and leave through `done`. */
#define ORT_TRY(expr, code, what)                       \
    do {                                                \
        OrtStatus *status_ = (expr);                    \
        if (status_ != NULL) {                          \
            rc = ort_fail(status_, (code), (what));     \
            goto done;                                  \
        }                                               \
    } while (0)

/* ---- files ---------------------------------------------------------------------------------- */

static int read_file(const char *path, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (f == NULL) return fail(EXIT_USAGE, "cannot open %s: %s", path, strerror(errno));
    size_t cap = 1 << 16, n = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL) {
        fclose(f);
        return fail(EXIT_INTERNAL, "out of memory reading %s", path);
    }
    for (;;) {
        if (n == cap) {
            uint8_t *bigger = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (bigger == NULL) {
                free(buf);
                fclose(f);
                return fail(EXIT_INTERNAL, "out of memory reading %s", path);
            }
            buf = bigger;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(buf);
        return fail(EXIT_USAGE, "cannot read %s", path);
    }
    *out = buf;
    *len = n;
    return EXIT_PASS;
}

/* ---- a small TensorProto reader ------------------------------------------------------------- */

/* The fields the zoo writes (onnx.numpy_helper.from_array): dims (1), data_type (2), name (8),
 * raw_data (9); float_data (4) and doc_string (12) are understood too. Everything else (other
 * element types, segments, external data, fields this reader does not know) is refused. */
typedef struct {
    char *name;
    int64_t dims[MAX_DIMS];
    size_t ndims;
    float *data;
    size_t count;
} Tensor;

typedef struct {
    const uint8_t *p, *end;
} Cursor;

static void tensor_free(Tensor *t) {
    free(t->name);
    free(t->data);
    memset(t, 0, sizeof *t);
}

static int varint(Cursor *c, uint64_t *out) {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (c->p >= c->end) return -1;
        uint8_t b = *c->p++;
        v |= (uint64_t)(b & 0x7f) << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

static float le_float(const uint8_t *p) {
    uint32_t u = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* Parse `buf` into `t`; on failure writes why into `why` and returns -1 (nothing to free). */
static int parse_tensor(const uint8_t *buf, size_t len, Tensor *t, char *why, size_t whylen) {
    Cursor c = {buf, buf + len};
    const uint8_t *raw = NULL, *floats = NULL;
    size_t raw_len = 0, nfloats = 0, floats_cap = 0;
    uint8_t *float_bytes = NULL; /* float_data values, little-endian, gathered from every occurrence */
    uint64_t data_type = 0;
    memset(t, 0, sizeof *t);
#define BAD(...)                                   \
    do {                                           \
        snprintf(why, whylen, __VA_ARGS__);        \
        goto bad;                                  \
    } while (0)
    while (c.p < c.end) {
        uint64_t key, v;
        if (varint(&c, &key) != 0) BAD("truncated field key");
        uint64_t field = key >> 3;
        unsigned wire = (unsigned)(key & 7);
        const uint8_t *chunk = NULL;
        uint64_t chunk_len = 0;
        if (wire == 2) {
            if (varint(&c, &chunk_len) != 0) BAD("truncated length of field %llu", (unsigned long long)field);
            if (chunk_len > (uint64_t)(c.end - c.p)) BAD("truncated field %llu", (unsigned long long)field);
            chunk = c.p;
            c.p += chunk_len;
        }
        switch (field) {
        case 1: /* dims: int64, packed or one at a time */
            if (wire == 0) {
                if (varint(&c, &v) != 0) BAD("truncated dims");
                if (t->ndims == MAX_DIMS) BAD("more than %d dims", MAX_DIMS);
                t->dims[t->ndims++] = (int64_t)v;
            } else if (wire == 2) {
                Cursor s = {chunk, chunk + chunk_len};
                while (s.p < s.end) {
                    if (varint(&s, &v) != 0) BAD("truncated dims");
                    if (t->ndims == MAX_DIMS) BAD("more than %d dims", MAX_DIMS);
                    t->dims[t->ndims++] = (int64_t)v;
                }
            } else {
                BAD("dims has wire type %u", wire);
            }
            break;
        case 2: /* data_type */
            if (wire != 0 || varint(&c, &data_type) != 0) BAD("bad data_type field");
            break;
        case 4: /* float_data: packed (wire 2) or one fixed32 at a time (wire 5) */
            if (wire == 5 && c.end - c.p < 4) BAD("truncated float_data");
            if (wire != 2 && wire != 5) BAD("float_data has wire type %u", wire);
            if (wire == 2 && chunk_len % 4 != 0) BAD("float_data of %llu bytes", (unsigned long long)chunk_len);
            {
                size_t add = wire == 5 ? 4 : (size_t)chunk_len;
                if (nfloats * 4 + add > floats_cap) {
                    size_t cap = (nfloats * 4 + add) * 2;
                    uint8_t *bigger = realloc(float_bytes, cap);
                    if (bigger == NULL) BAD("out of memory");
                    float_bytes = bigger;
                    floats_cap = cap;
                }
                memcpy(float_bytes + nfloats * 4, wire == 5 ? c.p : chunk, add);
                nfloats += add / 4;
                if (wire == 5) c.p += 4;
                floats = float_bytes;
            }
            break;
        case 8: /* name */
            if (wire != 2) BAD("name has wire type %u", wire);
            if (memchr(chunk, 0, chunk_len) != NULL) BAD("name contains a NUL byte");
            free(t->name);
            t->name = malloc(chunk_len + 1);
            if (t->name == NULL) BAD("out of memory");
            memcpy(t->name, chunk, chunk_len);
            t->name[chunk_len] = '\0';
            break;
        case 9: /* raw_data */
            if (wire != 2) BAD("raw_data has wire type %u", wire);
            raw = chunk;
            raw_len = chunk_len;
            break;
        case 12: /* doc_string: ignored */
            if (wire != 2) BAD("doc_string has wire type %u", wire);
            break;
        case 14: /* data_location: 0 DEFAULT, 1 EXTERNAL */
            if (wire != 0 || varint(&c, &v) != 0) BAD("bad data_location field");
            if (v != 0) BAD("the tensor keeps its data in an external file (not supported)");
            break;
        case 3:
            BAD("segmented tensors are not supported");
        case 13:
            BAD("the tensor keeps its data in an external file (not supported)");
        default:
            BAD("unsupported TensorProto field %llu (wire type %u)", (unsigned long long)field, wire);
        }
    }
    if (data_type != 1) BAD("data_type %llu is not float32 (1); this reader handles float32 only",
                            (unsigned long long)data_type);
    size_t count = 1;
    for (size_t i = 0; i < t->ndims; i++) {
        if (t->dims[i] < 0) BAD("negative dimension %lld", (long long)t->dims[i]);
        uint64_t d = (uint64_t)t->dims[i];
        if (d != 0 && count > SIZE_MAX / 4 / d) BAD("dimensions too large");
        count *= (size_t)d;
    }
    if (raw != NULL && floats != NULL) BAD("both raw_data and float_data are set");
    if (raw != NULL) {
        if (raw_len != count * 4) BAD("raw_data has %zu bytes, the shape needs %zu", raw_len, count * 4);
    } else if (nfloats != count) {
        BAD("%zu float values, the shape needs %zu", nfloats, count);
    }
    t->data = malloc(count ? count * sizeof(float) : 1);
    if (t->data == NULL) BAD("out of memory");
    const uint8_t *src = raw != NULL ? raw : floats;
    for (size_t i = 0; i < count; i++) t->data[i] = le_float(src + 4 * i);
    t->count = count;
    if (t->name == NULL && (t->name = calloc(1, 1)) == NULL) BAD("out of memory");
    free(float_bytes);
    return 0;
bad:
#undef BAD
    free(float_bytes);
    tensor_free(t);
    return -1;
}

static int load_tensor(const char *path, Tensor *t) {
    uint8_t *buf;
    size_t len;
    int rc = read_file(path, &buf, &len);
    if (rc != EXIT_PASS) return rc;
    char why[256];
    int bad = parse_tensor(buf, len, t, why, sizeof why);
    free(buf);
    if (bad) return fail(EXIT_USAGE, "%s: %s", path, why);
    return EXIT_PASS;
}

/* ---- the model's inputs and outputs --------------------------------------------------------- */

typedef struct {
    char *name;
    ONNXTensorElementDataType type;
    size_t ndims;
    int64_t dims[MAX_DIMS];
    char *symbols[MAX_DIMS]; /* the symbolic name of a dynamic axis ("batch"), or "" */
} Port;

static void port_free(Port *p) {
    free(p->name);
    for (size_t i = 0; i < p->ndims; i++) free(p->symbols[i]);
    memset(p, 0, sizeof *p);
}

static char *copy_string(const char *s) {
    size_t n = strlen(s) + 1;
    char *out = malloc(n);
    if (out != NULL) memcpy(out, s, n);
    return out;
}

static const char *type_name(ONNXTensorElementDataType t) {
    switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE: return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8: return "int8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8: return "uint8";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32: return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64: return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL: return "bool";
    default: return "other";
    }
}

/* Name, element type and shape (symbolic axes included) of input or output `index`. */
static int describe_port(OrtSession *session, OrtAllocator *alloc, int is_input, size_t index, Port *p) {
    int rc = EXIT_PASS;
    char *name = NULL;
    OrtTypeInfo *info = NULL;
    const OrtTensorTypeAndShapeInfo *tensor = NULL; /* owned by info */
    const char *symbols[MAX_DIMS];
    memset(p, 0, sizeof *p);
    ORT_TRY(is_input ? ort->SessionGetInputName(session, index, alloc, &name)
                     : ort->SessionGetOutputName(session, index, alloc, &name),
            EXIT_INTERNAL, "cannot read a port name");
    if ((p->name = copy_string(name)) == NULL) {
        rc = fail(EXIT_INTERNAL, "out of memory");
        goto done;
    }
    ORT_TRY(is_input ? ort->SessionGetInputTypeInfo(session, index, &info)
                     : ort->SessionGetOutputTypeInfo(session, index, &info),
            EXIT_INTERNAL, "cannot read a port type");
    ORT_TRY(ort->CastTypeInfoToTensorInfo(info, &tensor), EXIT_INTERNAL, "cannot read a port type");
    if (tensor == NULL) {
        rc = fail(EXIT_USAGE, "%s %s is not a tensor; this example handles tensors only",
                  is_input ? "input" : "output", p->name);
        goto done;
    }
    ORT_TRY(ort->GetTensorElementType(tensor, &p->type), EXIT_INTERNAL, "cannot read an element type");
    size_t n;
    ORT_TRY(ort->GetDimensionsCount(tensor, &n), EXIT_INTERNAL, "cannot read a shape");
    if (n > MAX_DIMS) {
        rc = fail(EXIT_USAGE, "%s has %zu dimensions (at most %d handled)", p->name, n, MAX_DIMS);
        goto done;
    }
    ORT_TRY(ort->GetDimensions(tensor, p->dims, n), EXIT_INTERNAL, "cannot read a shape");
    ORT_TRY(ort->GetSymbolicDimensions(tensor, symbols, n), EXIT_INTERNAL, "cannot read a shape");
    for (size_t i = 0; i < n; i++) {
        if ((p->symbols[i] = copy_string(symbols[i] ? symbols[i] : "")) == NULL) {
            rc = fail(EXIT_INTERNAL, "out of memory");
            goto done;
        }
        p->ndims = i + 1;
    }
done:
    if (name != NULL) {
        OrtStatus *s = ort->AllocatorFree(alloc, name);
        if (s != NULL) rc = ort_fail(s, EXIT_INTERNAL, "cannot free a port name");
    }
    if (info != NULL) ort->ReleaseTypeInfo(info);
    if (rc != EXIT_PASS) port_free(p);
    return rc;
}

/* ---- output: text and JSON ------------------------------------------------------------------ */

static void print_shape_text(const Port *p) {
    printf("[");
    for (size_t i = 0; i < p->ndims; i++) {
        if (i) printf(", ");
        if (p->dims[i] >= 0) printf("%lld", (long long)p->dims[i]);
        else printf("%s", p->symbols[i][0] ? p->symbols[i] : "?");
    }
    printf("]");
}

static void json_string(const char *s) {
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') printf("\\%c", *p);
        else if (*p < 0x20) printf("\\u%04x", *p);
        else putchar(*p);
    }
    putchar('"');
}

static void json_number(double x) {
    if (isfinite(x)) printf("%.17g", x);
    else printf("null"); /* JSON has no Infinity or NaN */
}

static void json_port(const Port *p) {
    printf("{\"name\":");
    json_string(p->name);
    printf(",\"type\":\"%s\",\"shape\":[", type_name(p->type));
    for (size_t i = 0; i < p->ndims; i++) {
        if (i) putchar(',');
        if (p->dims[i] >= 0) printf("%lld", (long long)p->dims[i]);
        else if (p->symbols[i][0]) json_string(p->symbols[i]);
        else printf("null");
    }
    printf("]}");
}

static void json_dims(const int64_t *dims, size_t n) {
    putchar('[');
    for (size_t i = 0; i < n; i++) printf(i ? ",%lld" : "%lld", (long long)dims[i]);
    putchar(']');
}

static void text_dims(char *buf, size_t len, const int64_t *dims, size_t n) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (size_t i = 0; i < n && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %lld" : "%lld", (long long)dims[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
}

/* ---- comparison: the zoo's rule and statistics (verify/parity.py's error_metrics) ------------ */

typedef struct {
    const char *output; /* the model's output name */
    double max_abs, max_rel, mean_abs, p99_abs, cosine, rel_l2, top1;
    int has_top1, finite, pass;
    size_t worst;        /* flat index of the element furthest outside the tolerance */
    double worst_actual, worst_expected;
} Metrics;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int error_metrics(const float *actual, const Tensor *expected, double atol, double rtol, Metrics *m) {
    size_t n = expected->count;
    m->max_abs = m->max_rel = m->mean_abs = m->p99_abs = m->rel_l2 = 0.0;
    m->cosine = 1.0;
    m->finite = m->pass = 1;
    m->has_top1 = 0;
    m->worst = 0;
    m->worst_actual = m->worst_expected = 0.0;
    if (n == 0) return EXIT_PASS;
    double *diffs = malloc(n * sizeof *diffs);
    if (diffs == NULL) return fail(EXIT_INTERNAL, "out of memory");
    double sum = 0, dot = 0, na2 = 0, nb2 = 0, d2 = 0, worst_excess = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        double a = actual[i], b = expected->data[i];
        if (!isfinite(a)) m->finite = 0;
        double d = fabs(a - b), bound = atol + rtol * fabs(b);
        diffs[i] = d;
        if (!(d <= bound)) m->pass = 0;
        double excess = isnan(d) ? INFINITY : d - bound;
        if (excess > worst_excess) {
            worst_excess = excess;
            m->worst = i;
            m->worst_actual = a;
            m->worst_expected = b;
        }
        if (d > m->max_abs) m->max_abs = d;
        double rel = d / fmax(fabs(b), REL_ERROR_FLOOR);
        if (rel > m->max_rel) m->max_rel = rel;
        sum += d;
        dot += a * b;
        na2 += a * a;
        nb2 += b * b;
        d2 += (a - b) * (a - b);
    }
    double na = sqrt(na2), nb = sqrt(nb2);
    size_t classes = expected->ndims >= 2 ? (size_t)expected->dims[expected->ndims - 1] : 0;
    if (classes > 1) {
        size_t rows = n / classes, agree = 0;
        for (size_t r = 0; r < rows; r++) {
            size_t ia = 0, ib = 0;
            for (size_t k = 1; k < classes; k++) {
                if (actual[r * classes + k] > actual[r * classes + ia]) ia = k;
                if (expected->data[r * classes + k] > expected->data[r * classes + ib]) ib = k;
            }
            agree += ia == ib;
        }
        m->has_top1 = 1;
        m->top1 = (double)agree / (double)rows;
    }
    if (!m->finite) {
        m->pass = 0;
        m->max_abs = m->max_rel = m->mean_abs = m->p99_abs = m->rel_l2 = INFINITY;
        m->cosine = 0.0;
    } else {
        qsort(diffs, n, sizeof *diffs, cmp_double);
        double idx = 0.99 * (double)(n - 1); /* numpy's linear interpolation */
        size_t lo = (size_t)floor(idx), hi = (size_t)ceil(idx);
        m->p99_abs = diffs[lo] + (diffs[hi] - diffs[lo]) * (idx - (double)lo);
        m->mean_abs = sum / (double)n;
        m->cosine = na > 0 && nb > 0 ? dot / (na * nb) : (na == nb ? 1.0 : 0.0);
        m->rel_l2 = nb > 0 ? sqrt(d2) / nb : (na == 0 ? 0.0 : INFINITY);
    }
    free(diffs);
    return EXIT_PASS;
}

static void unravel(size_t flat, const int64_t *dims, size_t n, size_t *out) {
    for (size_t k = n; k-- > 0;) {
        size_t d = dims[k] > 0 ? (size_t)dims[k] : 1;
        out[k] = flat % d;
        flat /= d;
    }
}

/* ---- options -------------------------------------------------------------------------------- */

typedef struct {
    const char *model, *input;
    const char **expect;
    size_t nexpect;
    double atol, rtol;
    int has_atol, has_rtol, json, version, threads, has_threads;
    char sha256[65]; /* the pinned sha256 in lowercase hex, "" when not pinned */
    const char *profile;                   /* --profile FILE, else NULL */
    char model_buf[4096];                  /* the model file the profile names */
    GraphOptimizationLevel opt_level;      /* ORT_ENABLE_ALL unless the profile says otherwise */
} Options;

static int parse_number(const char *opt, const char *s, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*s == '\0' || *end != '\0' || errno != 0 || !isfinite(v) || v < 0)
        return fail(EXIT_USAGE, "%s %s: expected a number >= 0", opt, s);
    *out = v;
    return EXIT_PASS;
}

static int parse_sha256(const char *s, char out[65]) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n && n == 64; i++) {
        if (!isxdigit((unsigned char)s[i])) n = 0;
    }
    if (n != 64) return fail(EXIT_USAGE, "--sha256 %s: expected 64 hex digits", s);
    for (size_t i = 0; i < 64; i++) out[i] = (char)tolower((unsigned char)s[i]);
    out[64] = '\0';
    return EXIT_PASS;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, Options *o) {
    memset(o, 0, sizeof *o);
    o->threads = 1;
    o->opt_level = ORT_ENABLE_ALL;
    o->expect = calloc((size_t)argc, sizeof *o->expect);
    if (o->expect == NULL) return fail(EXIT_INTERNAL, "out of memory");
    size_t npos = 0;
    const char *pos[2] = {NULL, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(USAGE, stdout);
            return EXIT_PASS;
        }
        if (strcmp(a, "--json") == 0) { o->json = 1; continue; }
        if (strcmp(a, "--version") == 0) { o->version = 1; continue; }
        if (strcmp(a, "--") == 0 || a[0] != '-' || a[1] == '\0') { /* a positional ("-" is one too) */
            if (strcmp(a, "--") == 0) {
                if (++i >= argc) break;
                a = argv[i];
            }
            if (npos == 2) return fail(EXIT_USAGE, "unexpected argument %s (see --help)", a);
            pos[npos++] = a;
            continue;
        }
        /* Options with a value: --opt VALUE or --opt=VALUE. */
        const char *names[] = {"--expect", "--atol", "--rtol", "--threads", "--sha256", "--profile"};
        const char *value = NULL;
        size_t k;
        for (k = 0; k < 6; k++) {
            size_t len = strlen(names[k]);
            if (strncmp(a, names[k], len) == 0 && (a[len] == '\0' || a[len] == '=')) {
                if (a[len] == '=') value = a + len + 1;
                else if (i + 1 < argc) value = argv[++i];
                else return fail(EXIT_USAGE, "%s needs a value (see --help)", names[k]);
                break;
            }
        }
        if (k == 6) return fail(EXIT_USAGE, "unknown option %s (see --help)", a);
        int rc = EXIT_PASS;
        if (k == 0) o->expect[o->nexpect++] = value;
        else if (k == 1) { rc = parse_number("--atol", value, &o->atol); o->has_atol = 1; }
        else if (k == 2) { rc = parse_number("--rtol", value, &o->rtol); o->has_rtol = 1; }
        else if (k == 4) { rc = parse_sha256(value, o->sha256); }
        else if (k == 5) { o->profile = value; }
        else {
            char *end;
            errno = 0;
            long t = strtol(value, &end, 10);
            if (*value == '\0' || *end != '\0' || errno != 0 || t < 1 || t > 1024)
                return fail(EXIT_USAGE, "--threads %s: expected a positive integer", value);
            o->threads = (int)t;
            o->has_threads = 1;
        }
        if (rc != EXIT_PASS) return rc;
    }
    if (o->version) return -1;
    if (o->profile != NULL) { /* the profile names the model: the one positional is INPUT.pb */
        if (o->sha256[0] != '\0') return fail(EXIT_USAGE, "--profile pins the file itself; give --profile or --sha256");
        if (npos == 2) return fail(EXIT_USAGE, "unexpected argument %s (the profile names the model)", pos[1]);
        o->input = pos[0];
    } else {
        if (npos == 0) return fail(EXIT_USAGE, "expected MODEL.onnx [INPUT.pb] (see --help)");
        o->model = pos[0];
        o->input = pos[1];
    }
    if (o->nexpect && o->input == NULL) return fail(EXIT_USAGE, "--expect needs INPUT.pb");
    if (o->nexpect && !(o->has_atol && o->has_rtol)) return fail(EXIT_USAGE, "--expect needs --atol and --rtol");
    return -1;
}

/* ---- the deployment profile (--profile): which file, pinned to which sha256, with which settings -- */

/* "1.16.3" and "1.16" -> the same major.minor. */
static int same_minor(const char *a, const char *b) {
    const char *da = strchr(a, '.'), *db = strchr(b, '.');
    if (da == NULL || db == NULL) return 0;
    size_t la = strcspn(da + 1, "."), lb = strcspn(db + 1, ".");
    return (size_t)(da - a) == (size_t)(db - b) && strncmp(a, b, (size_t)(da - a)) == 0 && la == lb &&
           strncmp(da + 1, db + 1, la) == 0;
}

static const char *json_str(const cJSON *obj, const char *key) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* The profile's entry for this ONNX Runtime and `batch` (0: unknown) sets o->model, the pin and
 * the settings; -1 to go on, else the exit status. */
static int apply_profile(Options *o, int64_t batch) {
    uint8_t *buf;
    size_t len;
    int rc = read_file(o->profile, &buf, &len);
    if (rc != EXIT_PASS) return rc;
    cJSON *root = cJSON_ParseWithLength((const char *)buf, len);
    free(buf);
    if (root == NULL) return fail(EXIT_USAGE, "%s is not JSON", o->profile);
    const char *version = OrtGetApiBase()->GetVersionString();
    const cJSON *entries = cJSON_GetObjectItemCaseSensitive(root, "entries"), *e, *best = NULL;
    char have[512] = "";
    if (!cJSON_IsArray(entries)) entries = NULL;
    cJSON_ArrayForEach(e, entries) {
        const char *rt = json_str(e, "runtime"), *ver = json_str(e, "version");
        if (rt == NULL || strcmp(rt, "onnxruntime") != 0 || ver == NULL) continue;
        if (strlen(have) + strlen(ver) + 3 < sizeof have) {
            if (have[0]) strcat(have, ", ");
            strcat(have, ver);
        }
        if (!same_minor(ver, version)) continue;
        const cJSON *b = cJSON_GetObjectItemCaseSensitive(e, "batch_size");
        if (cJSON_IsNumber(b) && batch > 0 && (int64_t)b->valuedouble == batch) { best = e; break; }
        if (cJSON_IsNull(b) && best == NULL) best = e;
    }
    if (best == NULL) {
        rc = fail(EXIT_CHECK, "%s has no file for onnxruntime %s (it has onnxruntime versions: %s)", o->profile,
                  version, have[0] ? have : "none");
        cJSON_Delete(root);
        return rc;
    }
    const char *file = json_str(best, "file"), *sha = json_str(best, "sha256");
    /* Only a plain file name beside the profile: never a path that leaves its folder. */
    if (file == NULL || file[0] == '\0' || file[0] == '.' || strspn(file, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != strlen(file)) {
        rc = fail(EXIT_USAGE, "%s: the file it names is not a file name beside it", o->profile);
    } else if (sha == NULL || parse_sha256(sha, o->sha256) != EXIT_PASS) {
        rc = fail(EXIT_USAGE, "%s: %s has no sha256", o->profile, file);
    } else {
        const char *slash = strrchr(o->profile, '/');
        int dir = slash == NULL ? 0 : (int)(slash - o->profile) + 1;
        if (snprintf(o->model_buf, sizeof o->model_buf, "%.*s%s", dir, o->profile, file) >= (int)sizeof o->model_buf)
            rc = fail(EXIT_USAGE, "%s: the model path is too long", o->profile);
        o->model = o->model_buf;
    }
    const cJSON *settings = cJSON_GetObjectItemCaseSensitive(best, "settings");
    const cJSON *threads = cJSON_GetObjectItemCaseSensitive(settings, "threads");
    const char *level = json_str(settings, "graph_optimization_level");
    if (!o->has_threads && cJSON_IsNumber(threads) && threads->valuedouble >= 1 && threads->valuedouble <= 1024)
        o->threads = (int)threads->valuedouble;
    if (level != NULL && strcmp(level, "disabled") == 0) o->opt_level = ORT_DISABLE_ALL;
    else if (level != NULL && strcmp(level, "basic") == 0) o->opt_level = ORT_ENABLE_BASIC;
    else if (level != NULL && strcmp(level, "extended") == 0) o->opt_level = ORT_ENABLE_EXTENDED;
    if (rc == EXIT_PASS)
        fprintf(stderr, "profile: %s (sha256 %.12s...) for onnxruntime %s, threads %d, graph optimisation %s\n", file,
                o->sha256, version, o->threads, level != NULL ? level : "all");
    cJSON_Delete(root);
    return rc == EXIT_PASS ? -1 : rc;
}

/* ---- the pin: the model file's sha256, read in a stream (any size) with OpenSSL's EVP API ---- */

static int sha256_file(const char *path, char hex[65]) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return fail(EXIT_USAGE, "cannot open %s: %s", path, strerror(errno));
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1;
    unsigned char buf[1 << 16];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, f)) > 0) ok = EVP_DigestUpdate(ctx, buf, n) == 1;
    int read_error = ferror(f);
    fclose(f);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (ok && !read_error) ok = EVP_DigestFinal_ex(ctx, md, &len) == 1 && len == 32;
    EVP_MD_CTX_free(ctx);
    if (read_error) return fail(EXIT_USAGE, "cannot read %s", path);
    if (!ok) return fail(EXIT_INTERNAL, "OpenSSL cannot compute the sha256 of %s", path);
    for (unsigned int i = 0; i < len; i++) snprintf(hex + 2 * i, 3, "%02x", md[i]);
    return EXIT_PASS;
}

/* ---- the program ---------------------------------------------------------------------------- */

typedef struct {
    OrtEnv *env;
    OrtSessionOptions *options;
    OrtSession *session;
    OrtMemoryInfo *memory;
    OrtValue *input_value;
    OrtValue **outputs;
    Port input;
    Port *out_ports;
    size_t noutputs;
    Tensor x;
    Tensor *expected;
    size_t nexpected;
    Metrics *metrics;
} App;

static void app_free(App *a) {
    if (a->outputs != NULL) {
        for (size_t i = 0; i < a->noutputs; i++)
            if (a->outputs[i] != NULL) ort->ReleaseValue(a->outputs[i]);
        free(a->outputs);
    }
    if (a->input_value != NULL) ort->ReleaseValue(a->input_value);
    if (a->memory != NULL) ort->ReleaseMemoryInfo(a->memory);
    if (a->session != NULL) ort->ReleaseSession(a->session);
    if (a->options != NULL) ort->ReleaseSessionOptions(a->options);
    if (a->env != NULL) ort->ReleaseEnv(a->env);
    port_free(&a->input);
    if (a->out_ports != NULL) {
        for (size_t i = 0; i < a->noutputs; i++) port_free(&a->out_ports[i]);
        free(a->out_ports);
    }
    tensor_free(&a->x);
    if (a->expected != NULL) {
        for (size_t i = 0; i < a->nexpected; i++) tensor_free(&a->expected[i]);
        free(a->expected);
    }
    free(a->metrics);
}

/* The verdict of the checks: failed_check is NULL when every check passed. */
typedef struct {
    const char *failed_check;
    char reason[768];
} Verdict;

static void print_json(const Options *o, const App *a, const Verdict *v, const int64_t *y_dims, size_t y_ndims,
                       const size_t *top, size_t rows) {
    printf("{\"model\":");
    json_string(o->model);
    printf(",\"onnxruntime\":");
    json_string(OrtGetApiBase()->GetVersionString());
    printf(",\"api_version\":%d,\"threads\":%d,\"inputs\":[", ORT_API_VERSION, o->threads);
    json_port(&a->input);
    printf("],\"outputs\":[");
    for (size_t i = 0; i < a->noutputs; i++) {
        if (i) putchar(',');
        json_port(&a->out_ports[i]);
    }
    printf("]");
    if (o->input != NULL) {
        printf(",\"input\":{\"file\":");
        json_string(o->input);
        printf(",\"name\":");
        json_string(a->x.name);
        printf(",\"shape\":");
        json_dims(a->x.dims, a->x.ndims);
        printf("},\"output_shape\":");
        json_dims(y_dims, y_ndims);
        printf(",\"top_class\":[");
        for (size_t r = 0; r < rows; r++) printf(r ? ",%zu" : "%zu", top[r]);
        printf("]");
    }
    if (o->nexpect) {
        printf(",\"atol\":");
        json_number(o->atol);
        printf(",\"rtol\":");
        json_number(o->rtol);
        printf(",\"checks\":[");
        for (size_t i = 0; i < a->nexpected && a->metrics != NULL && a->metrics[i].output != NULL; i++) {
            const Metrics *m = &a->metrics[i];
            if (i) putchar(',');
            printf("{\"output\":");
            json_string(m->output);
            printf(",\"expected_file\":");
            json_string(o->expect[i]);
            printf(",\"max_abs_error\":");
            json_number(m->max_abs);
            printf(",\"max_rel_error\":");
            json_number(m->max_rel);
            printf(",\"mean_abs_error\":");
            json_number(m->mean_abs);
            printf(",\"p99_abs_error\":");
            json_number(m->p99_abs);
            printf(",\"cosine_similarity\":");
            json_number(m->cosine);
            printf(",\"rel_l2_error\":");
            json_number(m->rel_l2);
            printf(",\"top1_agreement\":");
            if (m->has_top1) json_number(m->top1);
            else printf("null");
            printf(",\"pass\":%s", m->pass ? "true" : "false");
            size_t idx[MAX_DIMS];
            const Tensor *e = &a->expected[i];
            unravel(m->worst, e->dims, e->ndims, idx);
            printf(",\"worst\":{\"index\":[");
            for (size_t k = 0; k < e->ndims; k++) printf(k ? ",%zu" : "%zu", idx[k]);
            printf("],\"actual\":");
            json_number(m->worst_actual);
            printf(",\"expected\":");
            json_number(m->worst_expected);
            printf("}}");
        }
        printf("],\"verdict\":\"%s\",\"failed_check\":", v->failed_check ? "fail" : "pass");
        if (v->failed_check) json_string(v->failed_check);
        else printf("null");
        printf(",\"reason\":");
        if (v->failed_check) json_string(v->reason);
        else printf("null");
    }
    printf("}\n");
}

static int run(const Options *o, App *a) {
    int rc = EXIT_PASS;
    OrtAllocator *alloc = NULL; /* the default allocator: not released */
    size_t *top = NULL;
    Verdict verdict = {NULL, ""};
    const int64_t *y_dims = NULL;
    size_t y_ndims = 0, rows = 0;
    int64_t (*shapes)[MAX_DIMS] = NULL; /* each output's shape, rank and data */
    size_t *ranks = NULL;
    float **data = NULL;

    /* Bad input is found before ONNX Runtime starts: the files, the tensors. A pinned model whose
     * bytes differ is refused first, so that ONNX Runtime's parser never sees them. */
    if (o->sha256[0] != '\0') {
        char got[65];
        if ((rc = sha256_file(o->model, got)) != EXIT_PASS) return rc;
        if (strcmp(got, o->sha256) != 0)
            return fail(EXIT_CHECK, "%s: sha256 %s differs from the pinned %s; not loaded", o->model, got,
                        o->sha256);
    }
    FILE *f = fopen(o->model, "rb");
    if (f == NULL) return fail(EXIT_USAGE, "cannot open %s: %s", o->model, strerror(errno));
    fclose(f);
    if (o->input != NULL && (rc = load_tensor(o->input, &a->x)) != EXIT_PASS) return rc;
    if (o->nexpect) {
        a->expected = calloc(o->nexpect, sizeof *a->expected);
        a->metrics = calloc(o->nexpect, sizeof *a->metrics);
        if (a->expected == NULL || a->metrics == NULL) return fail(EXIT_INTERNAL, "out of memory");
        for (size_t i = 0; i < o->nexpect; i++) {
            if ((rc = load_tensor(o->expect[i], &a->expected[i])) != EXIT_PASS) return rc;
            a->nexpected = i + 1;
        }
    }

    ORT_TRY(ort->CreateEnv(ORT_LOGGING_LEVEL_FATAL, "classify", &a->env), EXIT_UNAVAILABLE,
            "ONNX Runtime cannot start");
    ORT_TRY(ort->CreateSessionOptions(&a->options), EXIT_INTERNAL, "CreateSessionOptions");
    ORT_TRY(ort->SetIntraOpNumThreads(a->options, o->threads), EXIT_INTERNAL, "SetIntraOpNumThreads");
    ORT_TRY(ort->SetInterOpNumThreads(a->options, 1), EXIT_INTERNAL, "SetInterOpNumThreads");
    ORT_TRY(ort->SetSessionGraphOptimizationLevel(a->options, o->opt_level), EXIT_INTERNAL,
            "SetSessionGraphOptimizationLevel");
    /* From a path, so that a model saved with external data finds its data file beside it. */
    OrtStatus *s = ort->CreateSession(a->env, o->model, a->options, &a->session);
    if (s != NULL) {
        OrtErrorCode code = ort->GetErrorCode(s);
        char what[600];
        snprintf(what, sizeof what, "ONNX Runtime cannot load %s", o->model);
        /* A file that is no model is bad input; a model this runtime cannot run fails the check. */
        return ort_fail(s, code == ORT_NO_SUCHFILE || code == ORT_INVALID_PROTOBUF || code == ORT_NO_MODEL
                               ? EXIT_USAGE : EXIT_CHECK, what);
    }
    ORT_TRY(ort->GetAllocatorWithDefaultOptions(&alloc), EXIT_INTERNAL, "GetAllocatorWithDefaultOptions");

    size_t ninputs;
    ORT_TRY(ort->SessionGetInputCount(a->session, &ninputs), EXIT_INTERNAL, "SessionGetInputCount");
    ORT_TRY(ort->SessionGetOutputCount(a->session, &a->noutputs), EXIT_INTERNAL, "SessionGetOutputCount");
    if (ninputs != 1) return fail(EXIT_USAGE, "%s has %zu inputs; this example feeds one", o->model, ninputs);
    if ((rc = describe_port(a->session, alloc, 1, 0, &a->input)) != EXIT_PASS) return rc;
    a->out_ports = calloc(a->noutputs ? a->noutputs : 1, sizeof *a->out_ports);
    a->outputs = calloc(a->noutputs ? a->noutputs : 1, sizeof *a->outputs);
    if (a->out_ports == NULL || a->outputs == NULL) return fail(EXIT_INTERNAL, "out of memory");
    for (size_t i = 0; i < a->noutputs; i++)
        if ((rc = describe_port(a->session, alloc, 0, i, &a->out_ports[i])) != EXIT_PASS) return rc;

    if (!o->json) {
        printf("model   %s (onnxruntime %s, C API %d)\n", o->model, OrtGetApiBase()->GetVersionString(),
               ORT_API_VERSION);
        printf("input   %s: %s ", a->input.name, type_name(a->input.type));
        print_shape_text(&a->input);
        printf("\n");
        for (size_t i = 0; i < a->noutputs; i++) {
            printf("output  %s: %s ", a->out_ports[i].name, type_name(a->out_ports[i].type));
            print_shape_text(&a->out_ports[i]);
            printf("\n");
        }
    }
    if (o->input == NULL) {
        if (o->json) print_json(o, a, &verdict, NULL, 0, NULL, 0);
        return EXIT_PASS;
    }

    /* The input must fit: float32, same rank, every fixed axis the same. */
    if (a->input.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        return fail(EXIT_USAGE, "input %s is %s; this example feeds float32", a->input.name,
                    type_name(a->input.type));
    int fits = a->x.ndims == a->input.ndims;
    for (size_t i = 0; fits && i < a->x.ndims; i++) fits = a->input.dims[i] < 0 || a->input.dims[i] == a->x.dims[i];
    if (!fits) {
        char got[256];
        text_dims(got, sizeof got, a->x.dims, a->x.ndims);
        char want[256];
        size_t used = (size_t)snprintf(want, sizeof want, "[");
        for (size_t i = 0; i < a->input.ndims && used < sizeof want; i++) {
            if (a->input.dims[i] >= 0)
                used += (size_t)snprintf(want + used, sizeof want - used, i ? ", %lld" : "%lld",
                                         (long long)a->input.dims[i]);
            else
                used += (size_t)snprintf(want + used, sizeof want - used, i ? ", %s" : "%s",
                                         a->input.symbols[i][0] ? a->input.symbols[i] : "?");
        }
        if (used < sizeof want) snprintf(want + used, sizeof want - used, "]");
        return fail(EXIT_USAGE, "%s: shape %s does not fit the model's input \"%s\" %s", o->input, got, a->input.name,
                    want);
    }
    for (size_t i = 0; i < a->noutputs; i++)
        if (a->out_ports[i].type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
            return fail(EXIT_USAGE, "output %s is %s; this example reads float32", a->out_ports[i].name,
                        type_name(a->out_ports[i].type));

    ORT_TRY(ort->CreateCpuMemoryInfo(OrtArenaAllocator, OrtMemTypeDefault, &a->memory), EXIT_INTERNAL,
            "CreateCpuMemoryInfo");
    ORT_TRY(ort->CreateTensorWithDataAsOrtValue(a->memory, a->x.data, a->x.count * sizeof(float), a->x.dims,
                                                a->x.ndims, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, &a->input_value),
            EXIT_INTERNAL, "CreateTensorWithDataAsOrtValue");
    {
        const char *in_names[1] = {a->input.name};
        const char **out_names = calloc(a->noutputs ? a->noutputs : 1, sizeof *out_names);
        if (out_names == NULL) return fail(EXIT_INTERNAL, "out of memory");
        for (size_t i = 0; i < a->noutputs; i++) out_names[i] = a->out_ports[i].name;
        const OrtValue *inputs[1] = {a->input_value};
        s = ort->Run(a->session, NULL, in_names, inputs, 1, out_names, a->noutputs, a->outputs);
        free(out_names);
        if (s != NULL) {
            char what[600];
            snprintf(what, sizeof what, "ONNX Runtime cannot run %s", o->model);
            return ort_fail(s, EXIT_CHECK, what);
        }
    }

    /* Each output's shape and data. */
    shapes = calloc(a->noutputs ? a->noutputs : 1, sizeof *shapes);
    ranks = calloc(a->noutputs ? a->noutputs : 1, sizeof *ranks);
    data = calloc(a->noutputs ? a->noutputs : 1, sizeof *data);
    if (shapes == NULL || ranks == NULL || data == NULL) {
        rc = fail(EXIT_INTERNAL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < a->noutputs; i++) {
        OrtTensorTypeAndShapeInfo *info = NULL;
        ORT_TRY(ort->GetTensorTypeAndShape(a->outputs[i], &info), EXIT_INTERNAL, "GetTensorTypeAndShape");
        OrtStatus *st = ort->GetDimensionsCount(info, &ranks[i]);
        if (st == NULL && ranks[i] > MAX_DIMS) {
            ort->ReleaseTensorTypeAndShapeInfo(info);
            rc = fail(EXIT_USAGE, "output %s has %zu dimensions", a->out_ports[i].name, ranks[i]);
            goto done;
        }
        if (st == NULL) st = ort->GetDimensions(info, shapes[i], ranks[i]);
        ort->ReleaseTensorTypeAndShapeInfo(info);
        if (st != NULL) {
            rc = ort_fail(st, EXIT_INTERNAL, "GetDimensions");
            goto done;
        }
        ORT_TRY(ort->GetTensorMutableData(a->outputs[i], (void **)&data[i]), EXIT_INTERNAL, "GetTensorMutableData");
    }

    /* The top class of each row of the first output ([rows, classes]). */
    y_dims = a->noutputs ? shapes[0] : NULL;
    y_ndims = a->noutputs ? ranks[0] : 0;
    if (a->noutputs) {
        size_t count = 1;
        for (size_t k = 0; k < y_ndims; k++) count *= (size_t)shapes[0][k];
        rows = y_ndims >= 2 ? (size_t)shapes[0][0] : (count ? 1 : 0);
        size_t classes = rows ? count / rows : 0;
        top = calloc(rows ? rows : 1, sizeof *top);
        if (top == NULL) {
            rc = fail(EXIT_INTERNAL, "out of memory");
            goto done;
        }
        for (size_t r = 0; r < rows && classes; r++) {
            const float *row = data[0] + r * classes;
            for (size_t k = 1; k < classes; k++)
                if (row[k] > row[top[r]]) top[r] = k;
            if (!o->json) printf("row %zu: class %zu (logit %.4f)\n", r, top[r], row[top[r]]);
        }
    }

    /* The checks, in the zoo's order: names, then shapes, then values. */
    if (o->nexpect) {
        if (a->nexpected != a->noutputs) {
            verdict.failed_check = "names";
            snprintf(verdict.reason, sizeof verdict.reason, "the model has %zu output(s), %zu expected", a->noutputs,
                     a->nexpected);
        }
        for (size_t i = 0; !verdict.failed_check && i < a->nexpected; i++) {
            const char *want = a->expected[i].name;
            if (want[0] && strcmp(want, a->out_ports[i].name) != 0) {
                verdict.failed_check = "names";
                snprintf(verdict.reason, sizeof verdict.reason, "output %zu is named \"%s\", expected \"%s\"", i,
                         a->out_ports[i].name, want);
            }
        }
        for (size_t i = 0; !verdict.failed_check && i < a->nexpected; i++) {
            const Tensor *e = &a->expected[i];
            int same = ranks[i] == e->ndims;
            for (size_t k = 0; same && k < e->ndims; k++) same = shapes[i][k] == e->dims[k];
            if (!same) {
                char got[256], want[256];
                text_dims(got, sizeof got, shapes[i], ranks[i]);
                text_dims(want, sizeof want, e->dims, e->ndims);
                verdict.failed_check = "shapes";
                snprintf(verdict.reason, sizeof verdict.reason, "output \"%s\" has shape %s, expected %s",
                         a->out_ports[i].name, got, want);
            }
        }
        for (size_t i = 0; !verdict.failed_check && i < a->nexpected; i++) {
            Metrics *m = &a->metrics[i];
            if ((rc = error_metrics(data[i], &a->expected[i], o->atol, o->rtol, m)) != EXIT_PASS) goto done;
            m->output = a->out_ports[i].name;
            if (!m->pass) {
                size_t idx[MAX_DIMS];
                char where[256];
                size_t used = 0;
                unravel(m->worst, a->expected[i].dims, a->expected[i].ndims, idx);
                for (size_t k = 0; k < a->expected[i].ndims && used < sizeof where; k++)
                    used += (size_t)snprintf(where + used, sizeof where - used, k ? ", %zu" : "%zu", idx[k]);
                where[used < sizeof where ? used : sizeof where - 1] = '\0';
                verdict.failed_check = "values";
                snprintf(verdict.reason, sizeof verdict.reason,
                         "output \"%s\" differs: max abs error %.2e, worst element [%s] = %.9g (expected %.9g)"
                         " > atol %g + rtol %g * |expected|",
                         m->output, m->max_abs, where, m->worst_actual, m->worst_expected, o->atol, o->rtol);
            } else if (!o->json) {
                printf("check   %s: pass, max abs error %.2e (atol %g, rtol %g)\n", m->output, m->max_abs, o->atol,
                       o->rtol);
            }
        }
    }
    if (o->json) print_json(o, a, &verdict, y_dims, y_ndims, top, rows);
    if (verdict.failed_check) {
        fprintf(stderr, "FAILED: %s: %s check: ", o->model, verdict.failed_check);
        for (const char *p = verdict.reason; *p; p++) fputc(*p == '\n' ? ' ' : *p, stderr);
        fputc('\n', stderr);
        rc = EXIT_CHECK;
    }
done:
    free(top);
    free(shapes);
    free(ranks);
    free(data);
    return rc;
}

int main(int argc, char **argv) {
    Options o;
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0) {
        free(o.expect);
        return rc;
    }
    /* The API of these headers: a newer library serves it (the C API only grows), an older one
     * returns NULL. */
    ort = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (ort == NULL) {
        free(o.expect);
        fprintf(stderr, "error: onnxruntime %s does not provide C API version %d (this program's headers)\n",
                OrtGetApiBase()->GetVersionString(), ORT_API_VERSION);
        return EXIT_UNAVAILABLE;
    }
    if (o.version) {
        free(o.expect);
        printf("onnxruntime %s (C API %d)\n", OrtGetApiBase()->GetVersionString(), ORT_API_VERSION);
        return fflush(stdout) == 0 ? EXIT_PASS : EXIT_INTERNAL;
    }
    if (o.profile != NULL) { /* the input's batch size picks the profile's entry, where it has one */
        int64_t batch = 0;
        if (o.input != NULL) {
            Tensor t;
            memset(&t, 0, sizeof t);
            if ((rc = load_tensor(o.input, &t)) != EXIT_PASS) {
                free(o.expect);
                return rc;
            }
            batch = t.ndims ? t.dims[0] : 0;
            tensor_free(&t);
        }
        if ((rc = apply_profile(&o, batch)) >= 0) {
            free(o.expect);
            return rc;
        }
    }
    App app;
    memset(&app, 0, sizeof app);
    rc = run(&o, &app);
    app_free(&app);
    free(o.expect);
    if (fflush(stdout) != 0 && rc == EXIT_PASS) rc = fail(EXIT_INTERNAL, "cannot write to stdout");
    return rc;
}
