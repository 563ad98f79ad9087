// classify.cpp: run a zoo model with ONNX Runtime's C++ API, and check it against its test data.
//
//   classify MODEL.onnx                      print the model's inputs and outputs
//   classify MODEL.onnx INPUT.pb             ... run it on a TensorProto, print the top class per row
//   classify MODEL.onnx INPUT.pb --expect OUTPUT.pb --atol 1e-4 --rtol 1e-3 [--json]
//                                            ... and compare with the expected output:
//                                            |actual - expected| <= atol + rtol * |expected|
//   classify MODEL.onnx INPUT.pb --sha256 HEX
//                                            ... only if the model file's sha256 is HEX (a pin)
//
// C++17, onnxruntime_cxx_api.h and OpenSSL's libcrypto (EVP, for the sha256 of --sha256); every resource is owned by an object (RAII), every error is an
// exception that main() turns into one line on stderr and an exit status. The command line, the
// output and the exit status are those of examples/c/classify.c: 0 ran (and every check passed),
// 1 a check failed (or the model's sha256 differs from --sha256), 2 bad input, 3 ONNX Runtime
// unavailable, 4 internal error.

// The API version of these headers is asked for explicitly, so that a library too old for them is
// reported (exit 3) instead of crashing in a static initialiser.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT
#include <openssl/evp.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

namespace {

enum Exit { kPass = 0, kCheck = 1, kUsage = 2, kUnavailable = 3, kInternal = 4 };

// Near-zero references make relative error meaningless; below this the denominator is clamped
// (verify/parity.py's REL_ERROR_FLOOR).
constexpr double kRelErrorFloor = 1e-3;
constexpr size_t kMaxDims = 16;

const char kUsageText[] =
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
    "                      level to use (--threads still wins); nlohmann/json reads it\n"
    "  --json              print one JSON line on stdout instead of text\n"
    "  --version           print the ONNX Runtime version and exit\n"
    "  -h, --help          show this help\n"
    "\n"
    "exit status: 0 ran / all checks passed, 1 a check failed or the sha256 differs, 2 bad input,\n"
    "3 ONNX Runtime unavailable, 4 internal error\n";

// An error with its exit status; the message becomes one line on stderr.
struct Failure : std::runtime_error {
  Exit code;
  Failure(Exit c, const std::string& what) : std::runtime_error(what), code(c) {}
};

// ---- files and a small TensorProto reader ------------------------------------------------------

std::vector<uint8_t> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Failure(kUsage, "cannot open " + path + ": " + std::strerror(errno));
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Failure(kUsage, "cannot read " + path);
  return bytes;
}

// The fields the zoo writes (onnx.numpy_helper.from_array): dims (1), data_type (2), name (8),
// raw_data (9); float_data (4) and doc_string (12) are understood too. Everything else (other
// element types, segments, external data, unknown fields) is refused.
struct Tensor {
  std::string name;
  std::vector<int64_t> dims;
  std::vector<float> data;
};

class ProtoReader {
 public:
  ProtoReader(const uint8_t* p, const uint8_t* end) : p_(p), end_(end) {}
  bool done() const { return p_ >= end_; }
  uint64_t varint() {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      if (p_ >= end_) throw std::runtime_error("truncated varint");
      uint8_t b = *p_++;
      v |= uint64_t(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    throw std::runtime_error("varint too long");
  }
  std::pair<const uint8_t*, size_t> chunk() {
    uint64_t n = varint();
    if (n > uint64_t(end_ - p_)) throw std::runtime_error("truncated length-delimited field");
    const uint8_t* start = p_;
    p_ += n;
    return {start, size_t(n)};
  }
  const uint8_t* fixed32() {
    if (end_ - p_ < 4) throw std::runtime_error("truncated fixed32 field");
    const uint8_t* start = p_;
    p_ += 4;
    return start;
  }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
};

float le_float(const uint8_t* p) {
  uint32_t u = uint32_t(p[0]) | uint32_t(p[1]) << 8 | uint32_t(p[2]) << 16 | uint32_t(p[3]) << 24;
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

Tensor parse_tensor(const std::vector<uint8_t>& bytes) {
  ProtoReader r(bytes.data(), bytes.data() + bytes.size());
  Tensor t;
  uint64_t data_type = 0;
  std::optional<std::pair<const uint8_t*, size_t>> raw;
  std::vector<uint8_t> float_bytes;
  bool has_floats = false;
  auto add_dim = [&t](uint64_t v) {
    if (t.dims.size() == kMaxDims) throw std::runtime_error("more than 16 dims");
    t.dims.push_back(int64_t(v));
  };
  while (!r.done()) {
    uint64_t key = r.varint();
    uint64_t field = key >> 3;
    unsigned wire = unsigned(key & 7);
    auto wire_error = [&](const char* what) {
      return std::runtime_error(std::string(what) + " has wire type " + std::to_string(wire));
    };
    switch (field) {
      case 1:  // dims
        if (wire == 0) {
          add_dim(r.varint());
        } else if (wire == 2) {
          auto [p, n] = r.chunk();
          ProtoReader s(p, p + n);
          while (!s.done()) add_dim(s.varint());
        } else {
          throw wire_error("dims");
        }
        break;
      case 2:  // data_type
        if (wire != 0) throw wire_error("data_type");
        data_type = r.varint();
        break;
      case 4:  // float_data
        has_floats = true;
        if (wire == 5) {
          const uint8_t* p = r.fixed32();
          float_bytes.insert(float_bytes.end(), p, p + 4);
        } else if (wire == 2) {
          auto [p, n] = r.chunk();
          if (n % 4) throw std::runtime_error("float_data of " + std::to_string(n) + " bytes");
          float_bytes.insert(float_bytes.end(), p, p + n);
        } else {
          throw wire_error("float_data");
        }
        break;
      case 8: {  // name
        if (wire != 2) throw wire_error("name");
        auto [p, n] = r.chunk();
        if (std::memchr(p, 0, n)) throw std::runtime_error("name contains a NUL byte");
        t.name.assign(reinterpret_cast<const char*>(p), n);
        break;
      }
      case 9:  // raw_data
        if (wire != 2) throw wire_error("raw_data");
        raw = r.chunk();
        break;
      case 12:  // doc_string: ignored
        if (wire != 2) throw wire_error("doc_string");
        r.chunk();
        break;
      case 14:  // data_location: 0 DEFAULT, 1 EXTERNAL
        if (wire != 0) throw wire_error("data_location");
        if (r.varint() != 0) throw std::runtime_error("the tensor keeps its data in an external file (not supported)");
        break;
      case 3:
        throw std::runtime_error("segmented tensors are not supported");
      case 13:
        throw std::runtime_error("the tensor keeps its data in an external file (not supported)");
      default:
        throw std::runtime_error("unsupported TensorProto field " + std::to_string(field) + " (wire type " +
                                 std::to_string(wire) + ")");
    }
  }
  if (data_type != 1)
    throw std::runtime_error("data_type " + std::to_string(data_type) +
                             " is not float32 (1); this reader handles float32 only");
  size_t count = 1;
  for (int64_t d : t.dims) {
    if (d < 0) throw std::runtime_error("negative dimension " + std::to_string(d));
    if (d != 0 && count > std::numeric_limits<size_t>::max() / 4 / uint64_t(d))
      throw std::runtime_error("dimensions too large");
    count *= size_t(d);
  }
  if (raw && has_floats) throw std::runtime_error("both raw_data and float_data are set");
  const uint8_t* src;
  if (raw) {
    if (raw->second != count * 4)
      throw std::runtime_error("raw_data has " + std::to_string(raw->second) + " bytes, the shape needs " +
                               std::to_string(count * 4));
    src = raw->first;
  } else {
    if (float_bytes.size() != count * 4)
      throw std::runtime_error(std::to_string(float_bytes.size() / 4) + " float values, the shape needs " +
                               std::to_string(count));
    src = float_bytes.data();
  }
  t.data.resize(count);
  for (size_t i = 0; i < count; i++) t.data[i] = le_float(src + 4 * i);
  return t;
}

Tensor load_tensor(const std::string& path) {
  auto bytes = read_file(path);
  try {
    return parse_tensor(bytes);
  } catch (const std::runtime_error& e) {
    throw Failure(kUsage, path + ": " + e.what());
  }
}

// ---- the model's inputs and outputs -----------------------------------------------------------

struct Port {
  std::string name;
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  std::vector<int64_t> dims;
  std::vector<std::string> symbols;  // the symbolic name of a dynamic axis ("batch"), or ""
};

const char* type_name(ONNXTensorElementDataType t) {
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

Port describe(const Ort::Session& session, bool is_input, size_t index) {
  Ort::AllocatorWithDefaultOptions alloc;
  Port p;
  p.name = (is_input ? session.GetInputNameAllocated(index, alloc) : session.GetOutputNameAllocated(index, alloc)).get();
  Ort::TypeInfo info = is_input ? session.GetInputTypeInfo(index) : session.GetOutputTypeInfo(index);
  if (info.GetONNXType() != ONNX_TYPE_TENSOR)
    throw Failure(kUsage, std::string(is_input ? "input " : "output ") + p.name +
                              " is not a tensor; this example handles tensors only");
  auto tensor = info.GetTensorTypeAndShapeInfo();
  p.type = tensor.GetElementType();
  p.dims = tensor.GetShape();
  if (p.dims.size() > kMaxDims) throw Failure(kUsage, p.name + " has more than 16 dimensions");
  std::vector<const char*> symbols(p.dims.size(), nullptr);
  tensor.GetSymbolicDimensions(symbols.data(), symbols.size());
  for (const char* s : symbols) p.symbols.emplace_back(s ? s : "");
  return p;
}

std::string shape_text(const Port& p) {
  std::string out = "[";
  for (size_t i = 0; i < p.dims.size(); i++) {
    if (i) out += ", ";
    out += p.dims[i] >= 0 ? std::to_string(p.dims[i]) : (p.symbols[i].empty() ? "?" : p.symbols[i]);
  }
  return out + "]";
}

std::string dims_text(const std::vector<int64_t>& dims, const char* sep = ", ") {
  std::string out = "[";
  for (size_t i = 0; i < dims.size(); i++) out += (i ? sep : "") + std::to_string(dims[i]);
  return out + "]";
}

// ---- JSON ---------------------------------------------------------------------------------------

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += char(c);
    } else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else {
      out += char(c);
    }
  }
  return out + "\"";
}

std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";  // JSON has no Infinity or NaN
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  return buf;
}

std::string json_port(const Port& p) {
  std::string out = "{\"name\":" + json_string(p.name) + ",\"type\":\"" + type_name(p.type) + "\",\"shape\":[";
  for (size_t i = 0; i < p.dims.size(); i++) {
    if (i) out += ",";
    out += p.dims[i] >= 0 ? std::to_string(p.dims[i]) : (p.symbols[i].empty() ? "null" : json_string(p.symbols[i]));
  }
  return out + "]}";
}

// ---- comparison: the zoo's rule and statistics (verify/parity.py's error_metrics) --------------

struct Metrics {
  std::string output;
  double max_abs = 0, max_rel = 0, mean_abs = 0, p99_abs = 0, cosine = 1, rel_l2 = 0, top1 = 0;
  bool has_top1 = false, finite = true, pass = true;
  std::vector<size_t> worst_index;
  double worst_actual = 0, worst_expected = 0;
};

Metrics error_metrics(const float* actual, const Tensor& expected, double atol, double rtol) {
  Metrics m;
  const size_t n = expected.data.size();
  m.worst_index.assign(expected.dims.size(), 0);
  if (n == 0) return m;
  std::vector<double> diffs(n);
  double sum = 0, dot = 0, na2 = 0, nb2 = 0, d2 = 0, worst_excess = -INFINITY;
  size_t worst = 0;
  for (size_t i = 0; i < n; i++) {
    double a = actual[i], b = expected.data[i];
    if (!std::isfinite(a)) m.finite = false;
    double d = std::fabs(a - b), bound = atol + rtol * std::fabs(b);
    diffs[i] = d;
    if (!(d <= bound)) m.pass = false;
    double excess = std::isnan(d) ? INFINITY : d - bound;
    if (excess > worst_excess) {
      worst_excess = excess;
      worst = i;
      m.worst_actual = a;
      m.worst_expected = b;
    }
    m.max_abs = std::max(m.max_abs, d);
    m.max_rel = std::max(m.max_rel, d / std::max(std::fabs(b), kRelErrorFloor));
    sum += d;
    dot += a * b;
    na2 += a * a;
    nb2 += b * b;
    d2 += (a - b) * (a - b);
  }
  const double na = std::sqrt(na2), nb = std::sqrt(nb2);
  const size_t classes = expected.dims.size() >= 2 ? size_t(expected.dims.back()) : 0;
  if (classes > 1) {
    size_t rows = n / classes, agree = 0;
    for (size_t r = 0; r < rows; r++) {
      const float* a = actual + r * classes;
      const float* b = expected.data.data() + r * classes;
      agree += std::max_element(a, a + classes) - a == std::max_element(b, b + classes) - b;
    }
    m.has_top1 = true;
    m.top1 = double(agree) / double(rows);
  }
  for (size_t k = expected.dims.size(), flat = worst; k-- > 0;) {
    size_t d = expected.dims[k] > 0 ? size_t(expected.dims[k]) : 1;
    m.worst_index[k] = flat % d;
    flat /= d;
  }
  if (!m.finite) {
    m.pass = false;
    m.max_abs = m.max_rel = m.mean_abs = m.p99_abs = m.rel_l2 = INFINITY;
    m.cosine = 0;
    return m;
  }
  std::sort(diffs.begin(), diffs.end());
  const double idx = 0.99 * double(n - 1);  // numpy's linear interpolation
  const size_t lo = size_t(std::floor(idx)), hi = size_t(std::ceil(idx));
  m.p99_abs = diffs[lo] + (diffs[hi] - diffs[lo]) * (idx - double(lo));
  m.mean_abs = sum / double(n);
  m.cosine = na > 0 && nb > 0 ? dot / (na * nb) : (na == nb ? 1.0 : 0.0);
  m.rel_l2 = nb > 0 ? std::sqrt(d2) / nb : (na == 0 ? 0.0 : INFINITY);
  return m;
}

// ---- options ------------------------------------------------------------------------------------

struct Options {
  std::string model;
  std::optional<std::string> input;
  std::vector<std::string> expect;
  std::optional<double> atol, rtol;
  int threads = 1;
  bool json = false, version = false, help = false, has_threads = false;
  std::optional<std::string> sha256;  // the pinned sha256, lowercase hex
  std::optional<std::string> profile;  // --profile FILE
  GraphOptimizationLevel opt_level = GraphOptimizationLevel::ORT_ENABLE_ALL;
};

double parse_number(const std::string& opt, const std::string& s) {
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || errno != 0 || !std::isfinite(v) || v < 0)
    throw Failure(kUsage, opt + " " + s + ": expected a number >= 0");
  return v;
}

std::string parse_sha256(const std::string& s) {
  std::string hex = s;
  for (char& c : hex) c = char(std::tolower(static_cast<unsigned char>(c)));
  if (hex.size() != 64 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
    throw Failure(kUsage, "--sha256 " + s + ": expected 64 hex digits");
  return hex;
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::vector<std::string> positional;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      o.help = true;
      return o;
    }
    if (a == "--json") {
      o.json = true;
      continue;
    }
    if (a == "--version") {
      o.version = true;
      continue;
    }
    if (a == "--" || a[0] != '-' || a.size() == 1) {
      if (a == "--") {
        if (++i >= argc) break;
        a = argv[i];
      }
      if (positional.size() == 2) throw Failure(kUsage, "unexpected argument " + a + " (see --help)");
      positional.push_back(a);
      continue;
    }
    std::string name = a.substr(0, a.find('=')), value;
    if (name != "--expect" && name != "--atol" && name != "--rtol" && name != "--threads" && name != "--sha256" &&
        name != "--profile")
      throw Failure(kUsage, "unknown option " + a + " (see --help)");
    if (a.size() > name.size()) {
      value = a.substr(name.size() + 1);
    } else if (i + 1 < argc) {
      value = argv[++i];
    } else {
      throw Failure(kUsage, name + " needs a value (see --help)");
    }
    if (name == "--expect") {
      o.expect.push_back(value);
    } else if (name == "--atol") {
      o.atol = parse_number(name, value);
    } else if (name == "--rtol") {
      o.rtol = parse_number(name, value);
    } else if (name == "--sha256") {
      o.sha256 = parse_sha256(value);
    } else if (name == "--profile") {
      o.profile = value;
    } else {
      char* end = nullptr;
      errno = 0;
      long t = std::strtol(value.c_str(), &end, 10);
      if (value.empty() || *end != '\0' || errno != 0 || t < 1 || t > 1024)
        throw Failure(kUsage, "--threads " + value + ": expected a positive integer");
      o.threads = int(t);
      o.has_threads = true;
    }
  }
  if (o.version) return o;
  if (o.profile) {  // the profile names the model: the one positional is INPUT.pb
    if (o.sha256) throw Failure(kUsage, "--profile pins the file itself; give --profile or --sha256");
    if (positional.size() == 2) throw Failure(kUsage, "unexpected argument " + positional[1] + " (the profile names the model)");
    if (!positional.empty()) o.input = positional[0];
  } else {
    if (positional.empty()) throw Failure(kUsage, "expected MODEL.onnx [INPUT.pb] (see --help)");
    o.model = positional[0];
    if (positional.size() > 1) o.input = positional[1];
  }
  if (!o.expect.empty() && !o.input) throw Failure(kUsage, "--expect needs INPUT.pb");
  if (!o.expect.empty() && !(o.atol && o.rtol)) throw Failure(kUsage, "--expect needs --atol and --rtol");
  return o;
}

// ---- the pin: the model file's sha256, read in a stream (any size) with OpenSSL's EVP API -------

std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Failure(kUsage, "cannot open " + path + ": " + std::strerror(errno));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), &EVP_MD_CTX_free);
  if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1)
    throw Failure(kInternal, "OpenSSL cannot compute the sha256 of " + path);
  std::vector<char> buf(1 << 16);
  while (in.read(buf.data(), std::streamsize(buf.size())) || in.gcount() > 0) {
    if (EVP_DigestUpdate(ctx.get(), buf.data(), size_t(in.gcount())) != 1)
      throw Failure(kInternal, "OpenSSL cannot compute the sha256 of " + path);
  }
  if (in.bad()) throw Failure(kUsage, "cannot read " + path);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(ctx.get(), md, &len) != 1 || len != 32)
    throw Failure(kInternal, "OpenSSL cannot compute the sha256 of " + path);
  static const char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; i++) hex += {kHex[md[i] >> 4], kHex[md[i] & 15]};
  return hex;
}

// ---- the deployment profile (--profile): which file, pinned to which sha256, with which settings --

std::string major_minor(const std::string& v) {
  size_t first = v.find('.');
  return first == std::string::npos ? v : v.substr(0, v.find('.', first + 1));
}

// The profile's entry for this ONNX Runtime and `batch` (0: unknown) sets the model, the pin and
// the settings.
void apply_profile(Options& o, int64_t batch) {
  std::ifstream in(*o.profile, std::ios::binary);
  if (!in) throw Failure(kUsage, "cannot open " + *o.profile + ": " + std::strerror(errno));
  nlohmann::json profile = nlohmann::json::parse(in, nullptr, false);
  if (profile.is_discarded()) throw Failure(kUsage, *o.profile + " is not JSON");
  const std::string version = OrtGetApiBase()->GetVersionString();
  const nlohmann::json* best = nullptr;
  std::string have;
  const auto entries = profile.is_object() ? profile.value("entries", nlohmann::json::array()) : nlohmann::json::array();
  for (const auto& e : entries) {
    if (!e.is_object() || e.value("runtime", "") != "onnxruntime" || !e.contains("version") || !e["version"].is_string())
      continue;
    const std::string ver = e["version"];
    have += (have.empty() ? "" : ", ") + ver;
    if (major_minor(ver) != major_minor(version)) continue;
    const auto& b = e.contains("batch_size") ? e["batch_size"] : nlohmann::json();
    if (b.is_number_integer() && batch > 0 && b.get<int64_t>() == batch) {
      best = &e;
      break;
    }
    if (b.is_null() && best == nullptr) best = &e;
  }
  if (best == nullptr)
    throw Failure(kCheck, *o.profile + " has no file for onnxruntime " + version + " (it has onnxruntime versions: " +
                              (have.empty() ? "none" : have) + ")");
  const std::string file = best->value("file", "");
  // Only a plain file name beside the profile: never a path that leaves its folder.
  if (file.empty() || file[0] == '.' ||
      file.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-") != std::string::npos)
    throw Failure(kUsage, *o.profile + ": the file it names is not a file name beside it");
  o.sha256 = parse_sha256(best->value("sha256", ""));
  const size_t slash = o.profile->rfind('/');
  o.model = (slash == std::string::npos ? std::string() : o.profile->substr(0, slash + 1)) + file;
  const auto settings = best->value("settings", nlohmann::json::object());
  const auto threads = settings.is_object() ? settings.value("threads", nlohmann::json()) : nlohmann::json();
  if (!o.has_threads && threads.is_number_integer() && threads.get<int64_t>() >= 1 && threads.get<int64_t>() <= 1024)
    o.threads = int(threads.get<int64_t>());
  const std::string level = settings.is_object() && settings.value("graph_optimization_level", nlohmann::json()).is_string()
                                ? settings["graph_optimization_level"].get<std::string>() : "all";
  if (level == "disabled") o.opt_level = GraphOptimizationLevel::ORT_DISABLE_ALL;
  else if (level == "basic") o.opt_level = GraphOptimizationLevel::ORT_ENABLE_BASIC;
  else if (level == "extended") o.opt_level = GraphOptimizationLevel::ORT_ENABLE_EXTENDED;
  std::cerr << "profile: " << file << " (sha256 " << o.sha256->substr(0, 12) << "...) for onnxruntime " << version
            << ", threads " << o.threads << ", graph optimisation " << level << "\n";
}

// ---- the program --------------------------------------------------------------------------------

int run(const Options& o) {
  // Bad input is found before ONNX Runtime starts: the files, the tensors. A pinned model whose
  // bytes differ is refused first, so that ONNX Runtime's parser never sees them.
  if (o.sha256) {
    std::string got = sha256_file(o.model);
    if (got != *o.sha256)
      throw Failure(kCheck, o.model + ": sha256 " + got + " differs from the pinned " + *o.sha256 + "; not loaded");
  }
  if (!std::ifstream(o.model, std::ios::binary)) throw Failure(kUsage, "cannot open " + o.model + ": " + std::strerror(errno));
  std::optional<Tensor> x;
  if (o.input) x = load_tensor(*o.input);
  std::vector<Tensor> expected;
  for (const auto& path : o.expect) expected.push_back(load_tensor(path));

  std::optional<Ort::Env> env;
  try {
    env.emplace(ORT_LOGGING_LEVEL_FATAL, "classify");
  } catch (const Ort::Exception& e) {
    throw Failure(kUnavailable, std::string("ONNX Runtime cannot start: ") + e.what());
  }
  Ort::SessionOptions options;
  options.SetIntraOpNumThreads(o.threads);
  options.SetInterOpNumThreads(1);
  options.SetGraphOptimizationLevel(o.opt_level);
  // From a path, so that a model saved with external data finds its data file beside it.
  std::optional<Ort::Session> session;
  try {
    session.emplace(*env, o.model.c_str(), options);
  } catch (const Ort::Exception& e) {
    OrtErrorCode code = e.GetOrtErrorCode();
    // A file that is no model is bad input; a model this runtime cannot run fails the check.
    bool bad_file = code == ORT_NO_SUCHFILE || code == ORT_INVALID_PROTOBUF || code == ORT_NO_MODEL;
    throw Failure(bad_file ? kUsage : kCheck, "ONNX Runtime cannot load " + o.model + ": " + e.what());
  }
  const char* version = OrtGetApiBase()->GetVersionString();

  if (session->GetInputCount() != 1)
    throw Failure(kUsage, o.model + " has " + std::to_string(session->GetInputCount()) +
                              " inputs; this example feeds one");
  const Port input = describe(*session, true, 0);
  std::vector<Port> outputs;
  for (size_t i = 0; i < session->GetOutputCount(); i++) outputs.push_back(describe(*session, false, i));

  std::ostringstream json;
  json << "{\"model\":" << json_string(o.model) << ",\"onnxruntime\":" << json_string(version)
       << ",\"api_version\":" << ORT_API_VERSION << ",\"threads\":" << o.threads << ",\"inputs\":["
       << json_port(input) << "],\"outputs\":[";
  for (size_t i = 0; i < outputs.size(); i++) json << (i ? "," : "") << json_port(outputs[i]);
  json << "]";
  if (!o.json) {
    std::cout << "model   " << o.model << " (onnxruntime " << version << ", C++ API " << ORT_API_VERSION << ")\n";
    std::cout << "input   " << input.name << ": " << type_name(input.type) << " " << shape_text(input) << "\n";
    for (const auto& p : outputs)
      std::cout << "output  " << p.name << ": " << type_name(p.type) << " " << shape_text(p) << "\n";
  }
  if (!x) {
    if (o.json) std::cout << json.str() << "}\n";
    return kPass;
  }

  // The input must fit: float32, same rank, every fixed axis the same.
  if (input.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
    throw Failure(kUsage, "input " + input.name + " is " + type_name(input.type) + "; this example feeds float32");
  bool fits = x->dims.size() == input.dims.size();
  for (size_t i = 0; fits && i < x->dims.size(); i++) fits = input.dims[i] < 0 || input.dims[i] == x->dims[i];
  if (!fits)
    throw Failure(kUsage, *o.input + ": shape " + dims_text(x->dims) + " does not fit the model's input \"" +
                              input.name + "\" " + shape_text(input));
  for (const auto& p : outputs)
    if (p.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
      throw Failure(kUsage, "output " + p.name + " is " + type_name(p.type) + "; this example reads float32");

  auto memory = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  auto value = Ort::Value::CreateTensor<float>(memory, x->data.data(), x->data.size(), x->dims.data(), x->dims.size());
  const char* in_names[] = {input.name.c_str()};
  std::vector<const char*> out_names;
  for (const auto& p : outputs) out_names.push_back(p.name.c_str());
  std::vector<Ort::Value> results;
  try {
    results = session->Run(Ort::RunOptions{nullptr}, in_names, &value, 1, out_names.data(), out_names.size());
  } catch (const Ort::Exception& e) {
    throw Failure(kCheck, "ONNX Runtime cannot run " + o.model + ": " + e.what());
  }
  std::vector<std::vector<int64_t>> shapes;
  for (const auto& r : results) shapes.push_back(r.GetTensorTypeAndShapeInfo().GetShape());

  // The top class of each row of the first output ([rows, classes]).
  std::vector<size_t> top;
  if (!results.empty()) {
    const float* y = results[0].GetTensorData<float>();
    size_t count = results[0].GetTensorTypeAndShapeInfo().GetElementCount();
    size_t rows = shapes[0].size() >= 2 ? size_t(shapes[0][0]) : (count ? 1 : 0);
    size_t classes = rows ? count / rows : 0;
    for (size_t r = 0; r < rows && classes; r++) {
      const float* row = y + r * classes;
      top.push_back(size_t(std::max_element(row, row + classes) - row));
      if (!o.json) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%.4f", double(row[top.back()]));
        std::cout << "row " << r << ": class " << top.back() << " (logit " << buf << ")\n";
      }
    }
  }
  json << ",\"input\":{\"file\":" << json_string(*o.input) << ",\"name\":" << json_string(x->name)
       << ",\"shape\":" << dims_text(x->dims, ",") << "},\"output_shape\":"
       << (shapes.empty() ? "[]" : dims_text(shapes[0], ",")) << ",\"top_class\":[";
  for (size_t r = 0; r < top.size(); r++) json << (r ? "," : "") << top[r];
  json << "]";

  // The checks, in the zoo's order: names, then shapes, then values.
  std::string failed_check, reason;
  std::vector<Metrics> metrics;
  if (!o.expect.empty()) {
    if (expected.size() != outputs.size()) {
      failed_check = "names";
      reason = "the model has " + std::to_string(outputs.size()) + " output(s), " + std::to_string(expected.size()) +
               " expected";
    }
    for (size_t i = 0; failed_check.empty() && i < expected.size(); i++) {
      if (!expected[i].name.empty() && expected[i].name != outputs[i].name) {
        failed_check = "names";
        reason = "output " + std::to_string(i) + " is named \"" + outputs[i].name + "\", expected \"" +
                 expected[i].name + "\"";
      }
    }
    for (size_t i = 0; failed_check.empty() && i < expected.size(); i++) {
      if (shapes[i] != expected[i].dims) {
        failed_check = "shapes";
        reason = "output \"" + outputs[i].name + "\" has shape " + dims_text(shapes[i]) + ", expected " +
                 dims_text(expected[i].dims);
      }
    }
    for (size_t i = 0; failed_check.empty() && i < expected.size(); i++) {
      Metrics m = error_metrics(results[i].GetTensorData<float>(), expected[i], *o.atol, *o.rtol);
      m.output = outputs[i].name;
      char buf[512];
      if (!m.pass) {
        std::string where;
        for (size_t k = 0; k < m.worst_index.size(); k++) where += (k ? ", " : "") + std::to_string(m.worst_index[k]);
        std::snprintf(buf, sizeof buf,
                      "output \"%s\" differs: max abs error %.2e, worst element [%s] = %.9g (expected %.9g)"
                      " > atol %g + rtol %g * |expected|",
                      m.output.c_str(), m.max_abs, where.c_str(), m.worst_actual, m.worst_expected, *o.atol, *o.rtol);
        failed_check = "values";
        reason = buf;
      } else if (!o.json) {
        std::snprintf(buf, sizeof buf, "check   %s: pass, max abs error %.2e (atol %g, rtol %g)\n", m.output.c_str(),
                      m.max_abs, *o.atol, *o.rtol);
        std::cout << buf;
      }
      metrics.push_back(std::move(m));
    }
    json << ",\"atol\":" << json_number(*o.atol) << ",\"rtol\":" << json_number(*o.rtol) << ",\"checks\":[";
    for (size_t i = 0; i < metrics.size(); i++) {
      const Metrics& m = metrics[i];
      json << (i ? "," : "") << "{\"output\":" << json_string(m.output) << ",\"expected_file\":"
           << json_string(o.expect[i]) << ",\"max_abs_error\":" << json_number(m.max_abs)
           << ",\"max_rel_error\":" << json_number(m.max_rel) << ",\"mean_abs_error\":" << json_number(m.mean_abs)
           << ",\"p99_abs_error\":" << json_number(m.p99_abs) << ",\"cosine_similarity\":" << json_number(m.cosine)
           << ",\"rel_l2_error\":" << json_number(m.rel_l2)
           << ",\"top1_agreement\":" << (m.has_top1 ? json_number(m.top1) : "null")
           << ",\"pass\":" << (m.pass ? "true" : "false") << ",\"worst\":{\"index\":[";
      for (size_t k = 0; k < m.worst_index.size(); k++) json << (k ? "," : "") << m.worst_index[k];
      json << "],\"actual\":" << json_number(m.worst_actual) << ",\"expected\":" << json_number(m.worst_expected)
           << "}}";
    }
    json << "],\"verdict\":\"" << (failed_check.empty() ? "pass" : "fail") << "\",\"failed_check\":"
         << (failed_check.empty() ? "null" : json_string(failed_check))
         << ",\"reason\":" << (failed_check.empty() ? "null" : json_string(reason));
  }
  if (o.json) std::cout << json.str() << "}\n";
  if (!failed_check.empty()) {
    std::replace(reason.begin(), reason.end(), '\n', ' ');
    std::cerr << "FAILED: " << o.model << ": " << failed_check << " check: " << reason << "\n";
    return kCheck;
  }
  return kPass;
}

void error_line(const std::string& message) {
  std::string line = message;
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::replace(line.begin(), line.end(), '\r', ' ');
  std::cerr << "error: " << line << "\n";
}

}  // namespace

int main(int argc, char** argv) {
  try {
    Options o = parse_args(argc, argv);
    if (o.help) {
      std::cout << kUsageText;
      return kPass;
    }
    // The API of these headers: a newer library serves it (the C API only grows), an older one
    // returns nullptr.
    const OrtApi* api = OrtGetApiBase()->GetApi(ORT_API_VERSION);
    if (api == nullptr) {
      error_line(std::string("onnxruntime ") + OrtGetApiBase()->GetVersionString() + " does not provide C API version " +
                 std::to_string(ORT_API_VERSION) + " (this program's headers)");
      return kUnavailable;
    }
    Ort::InitApi(api);
    if (o.version) {
      std::cout << "onnxruntime " << OrtGetApiBase()->GetVersionString() << " (C++ API " << ORT_API_VERSION << ")"
                << std::endl;
      return std::cout ? kPass : kInternal;
    }
    if (o.profile) {  // the input's batch size picks the profile's entry, where it has one
      int64_t batch = 0;
      if (o.input) {
        const Tensor t = load_tensor(*o.input);
        if (!t.dims.empty()) batch = t.dims[0];
      }
      apply_profile(o, batch);
    }
    int rc = run(o);
    std::cout.flush();
    if (!std::cout) {
      error_line("cannot write to stdout");
      return kInternal;
    }
    return rc;
  } catch (const Failure& e) {
    error_line(e.what());
    return e.code;
  } catch (const Ort::Exception& e) {
    error_line(std::string("ONNX Runtime: ") + e.what());
    return kInternal;
  } catch (const std::bad_alloc&) {
    error_line("out of memory");
    return kInternal;
  } catch (const std::exception& e) {
    error_line(std::string("internal error: ") + e.what());
    return kInternal;
  }
}
