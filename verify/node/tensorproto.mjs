// A small reader of ONNX TensorProto files (test_data_set_*/input_*.pb, output_*.pb).
//
// It decodes the protobuf wire format by hand (no protobuf library, no generated code): the
// fields a tensor needs are dims (1), data_type (2), float_data (4), int32_data (5),
// int64_data (7), name (8), raw_data (9), double_data (10) and data_location (14).
// Tensors stored as external data are refused with a clear error.

const TYPES = {
  1: { name: "float32", bytes: 4, array: Float32Array },
  2: { name: "uint8", bytes: 1, array: Uint8Array },
  3: { name: "int8", bytes: 1, array: Int8Array },
  6: { name: "int32", bytes: 4, array: Int32Array },
  7: { name: "int64", bytes: 8, array: BigInt64Array },
  9: { name: "bool", bytes: 1, array: Uint8Array },
  10: { name: "float16", bytes: 2, array: Uint16Array },
  11: { name: "float64", bytes: 8, array: Float64Array },
};

class Reader {
  constructor(bytes) {
    this.buf = bytes;
    this.pos = 0;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }
  done() {
    return this.pos >= this.buf.length;
  }
  varint() {
    // BigInt keeps int64 dims exact; callers convert to Number where it is safe.
    let result = 0n;
    let shift = 0n;
    for (;;) {
      if (this.pos >= this.buf.length) throw new Error("truncated varint");
      const b = this.buf[this.pos++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
      if (shift > 70n) throw new Error("varint too long");
    }
  }
  bytes() {
    const n = Number(this.varint());
    if (this.pos + n > this.buf.length) throw new Error("truncated length-delimited field");
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  skip(wire) {
    if (wire === 0) this.varint();
    else if (wire === 1) this.pos += 8;
    else if (wire === 2) this.bytes();
    else if (wire === 5) this.pos += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function signed64(v) {
  return BigInt.asIntN(64, v);
}

// Repeated scalar field: packed (wire 2) or one value at a time.
function readRepeated(r, wire, one, out) {
  if (wire === 2) {
    const sub = new Reader(r.bytes());
    while (!sub.done()) out.push(one(sub));
  } else {
    out.push(one(r));
  }
}

/**
 * Parse a serialized TensorProto.
 * @param {Uint8Array} bytes
 * @returns {{name: string, type: string, dims: number[], data: ArrayLike<number|bigint>}}
 */
export function parseTensorProto(bytes) {
  const r = new Reader(bytes);
  const dims = [];
  const floats = [];
  const ints32 = [];
  const ints64 = [];
  const doubles = [];
  let dataType = 0;
  let name = "";
  let raw = null;
  let external = false;
  while (!r.done()) {
    const key = Number(r.varint());
    const field = key >>> 3;
    const wire = key & 7;
    switch (field) {
      case 1:
        readRepeated(r, wire, (s) => signed64(s.varint()), dims);
        break;
      case 2:
        dataType = Number(r.varint());
        break;
      case 4:
        readRepeated(r, wire, (s) => { const v = s.view.getFloat32(s.pos, true); s.pos += 4; return v; }, floats);
        break;
      case 5:
        readRepeated(r, wire, (s) => Number(BigInt.asIntN(32, s.varint())), ints32);
        break;
      case 7:
        readRepeated(r, wire, (s) => signed64(s.varint()), ints64);
        break;
      case 8:
        name = new TextDecoder().decode(r.bytes());
        break;
      case 9:
        raw = r.bytes();
        break;
      case 10:
        readRepeated(r, wire, (s) => { const v = s.view.getFloat64(s.pos, true); s.pos += 8; return v; }, doubles);
        break;
      case 14:
        external = Number(r.varint()) === 1;
        break;
      default:
        r.skip(wire);
    }
  }
  if (external) throw new Error(`tensor ${JSON.stringify(name)} keeps its data in an external file (not supported)`);
  const type = TYPES[dataType];
  if (!type) throw new Error(`tensor ${JSON.stringify(name)} has unsupported data_type ${dataType}`);
  const shape = dims.map((d) => {
    if (d < 0n || d > BigInt(Number.MAX_SAFE_INTEGER)) throw new Error(`bad dimension ${d}`);
    return Number(d);
  });
  const count = shape.reduce((a, b) => a * b, 1);
  let data;
  if (raw !== null) {
    if (raw.length !== count * type.bytes) {
      throw new Error(`tensor ${JSON.stringify(name)}: raw_data has ${raw.length} bytes, shape ${JSON.stringify(shape)} needs ${count * type.bytes}`);
    }
    // An aligned copy of its own (Buffer.slice would be a view at any offset); little-endian as ONNX stores it.
    const copy = new Uint8Array(raw);
    data = new type.array(copy.buffer, 0, count);
  } else {
    const src = { 1: floats, 11: doubles, 7: ints64 }[dataType] ?? ints32;
    if (src.length !== count) {
      throw new Error(`tensor ${JSON.stringify(name)}: ${src.length} values, shape ${JSON.stringify(shape)} needs ${count}`);
    }
    data = type.array.from(src);
  }
  return { name, type: type.name, dims: shape, data };
}
