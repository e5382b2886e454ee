// A small CBOR (RFC 8949) decoder for the proof check in the page: device entries and
// COSE checkpoints. Definite lengths only, no duplicate map keys, nothing after the
// item (hashtrail writes canonical CBOR; anything else is refused). Maps decode to
// Map objects so integer keys stay integers; byte strings to Uint8Array; tags to
// {tag, value}. Integers beyond 2^53 are refused (no hashtrail field reaches them).
"use strict";

const HashtrailCBOR = (() => {
  class CBORError extends Error {}

  function decode(bytes) {
    let pos = 0;
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);

    function need(n) {
      if (pos + n > bytes.length) throw new CBORError("truncated CBOR");
    }
    function arg(info) {
      if (info < 24) return info;
      let v;
      if (info === 24) { need(1); v = bytes[pos]; pos += 1; }
      else if (info === 25) { need(2); v = view.getUint16(pos); pos += 2; }
      else if (info === 26) { need(4); v = view.getUint32(pos); pos += 4; }
      else if (info === 27) {
        need(8);
        const hi = view.getUint32(pos), lo = view.getUint32(pos + 4);
        pos += 8;
        if (hi >= 0x200000) throw new CBORError("integer too large");
        v = hi * 0x100000000 + lo;
      } else throw new CBORError("indefinite length or reserved value");
      return v;
    }
    function item(depth) {
      if (depth > 16) throw new CBORError("CBOR nested too deeply");
      need(1);
      const ib = bytes[pos]; pos += 1;
      const major = ib >> 5, info = ib & 31;
      if (major === 7) {
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        if (info === 25) { need(2); const h = view.getUint16(pos); pos += 2; return half(h); }
        if (info === 26) { need(4); const f = view.getFloat32(pos); pos += 4; return f; }
        if (info === 27) { need(8); const f = view.getFloat64(pos); pos += 8; return f; }
        throw new CBORError("unsupported simple value");
      }
      const n = arg(info);
      switch (major) {
        case 0: return n;
        case 1: return -1 - n;
        case 2: { need(n); const b = bytes.slice(pos, pos + n); pos += n; return b; }
        case 3: {
          need(n);
          const t = new TextDecoder("utf-8", { fatal: true }).decode(bytes.subarray(pos, pos + n));
          pos += n;
          return t;
        }
        case 4: { const a = []; for (let i = 0; i < n; i++) a.push(item(depth + 1)); return a; }
        case 5: {
          const m = new Map();
          for (let i = 0; i < n; i++) {
            const k = item(depth + 1);
            if (typeof k === "object" && k !== null) throw new CBORError("map key is not a number or text");
            if (m.has(k)) throw new CBORError("map key repeated");
            m.set(k, item(depth + 1));
          }
          return m;
        }
        case 6: return { tag: n, value: item(depth + 1) };
      }
      throw new CBORError("bad CBOR");
    }
    function half(h) {
      const e = (h >> 10) & 31, f = h & 1023, s = h & 0x8000 ? -1 : 1;
      if (e === 0) return s * f * 2 ** -24;
      if (e === 31) return f ? NaN : s * Infinity;
      return s * (1 + f / 1024) * 2 ** (e - 15);
    }
    const v = item(0);
    if (pos !== bytes.length) throw new CBORError("bytes after the CBOR item");
    return v;
  }

  return { decode, CBORError };
})();
