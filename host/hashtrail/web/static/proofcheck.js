// The proof check in the page: a hashtrail-proof/3 (or /2) inclusion proof (what
// `hashtrail ledger prove` writes and /api/proof/ID/SEQ serves) checked in the browser
// with WebCrypto, trusting nothing but the ledger key (and the collector keys) the user
// pinned. The steps and
// their order are those of hashtrail.ledger.proof.check_inclusion_proof:
//
//   device key        SHA-256(pub) is the fingerprint; its first 16 bytes the device id
//   leaf              "HTL1" || id || seq (u64 BE) || SHA-256(entry) || entry; the entry
//                     (CBOR) states that seq; entry 0 is the key's key-created entry
//   device signature  per-entry: ECDSA P-256 over SHA-256(entry). The device signs the
//                     entry hash as a prehashed digest and WebCrypto hashes the message
//                     itself, so the message given to verify() is the entry bytes (the
//                     preimage), and the signature is raw r || s (what WebCrypto takes).
//                     Checkpoints only: the chain links from the entry to the head of a
//                     COSE_Sign1 device checkpoint, ES256 over its RFC 9052
//                     Sig_structure
//   inclusion         RFC 9162 2.1.3.2: the audit path from SHA-256(0x00 || leaf) to the
//                     root, with SHA-256(0x01 || left || right) nodes
//   checkpoint        the signed note's origin / size / base64 root lines name the
//                     proof's tree size and root
//   ledger signature  Ed25519 (C2SP signed note) by the pinned key: key id
//                     SHA-256(name || "\n" || 0x01 || pub)[:4], over the note text
//   enrollment        a /3 proof's enrollment.signature: Ed25519 by the collector key it
//                     names (<name>+<key id>+<base64>, the key id checked as above) over
//                     the text hashtrail.formats.enrollment signs, rebuilt here from the
//                     proof's device id and key and its enrollment fields:
//                       "hashtrail enrollment v1\ndevice <id>\npub <hex>\nlabel <label>\n"
//                       "board <board>\nfw <fw>\nenrolled_at <decimal>\n" (UTF-8)
//                     A field no such text can carry (over 200 characters, a control
//                     character, not well-formed Unicode) was signed by nobody: refused.
//                     With collector keys pinned, the signature must be by one of them,
//                     and an unsigned enrollment is refused too; without, the page says
//                     whose key signed ("the proof's key"), or that the enrollment is
//                     the ledger operator's statement (a /2 proof, or no signature).
//
// Each step runs on its own, so a page shows every step passed or failed, and a proof
// passes only when all of them did. Malformed fields (unknown ones, in the proof, its
// device, device signature or enrollment; wrong types; a collector key not in its
// canonical form) fail at "input", as in Python.
//
// The pages give check() the proof's JSON text, read here as
// hashtrail.ledger.proof.load_proof reads it (parseJSON): JSON.parse cannot, since it
// makes 1700000000.0 and 1.7e9 the integer 1700000000 and keeps the last of a field
// named twice, where Python reads a float (refused wherever an integer is due) and
// refuses the text.
"use strict";

const HashtrailProof = (() => {
  const enc = new TextEncoder();
  // the inclusion proof formats read (hashtrail.ledger.proof PROOF_FORMAT, PROOF_FORMAT_2)
  const FORMATS = ["hashtrail-proof/3", "hashtrail-proof/2"];
  const STEPS = ["input", "device key", "leaf", "device signature", "inclusion",
                 "checkpoint", "ledger signature", "enrollment"];
  // hashtrail.formats.enrollment: CONTEXT, MAX_TEXT, SIG_SIZE
  const ENROLL_CONTEXT = "hashtrail enrollment v1";
  const ENROLL_MAX_TEXT = 200;
  const ENROLL_KEYS_2 = ["label", "board", "fw", "enrolled_at", "collector"];
  const ENROLL_KEYS_3 = [...ENROLL_KEYS_2, "signature"];
  const PROOF_KEYS = ["format", "type", "leaf", "leaf_index", "tree_size", "root", "path",
                      "checkpoint", "verifier_key", "device", "enrollment", "device_signature"];
  const LEAF_TAG = enc.encode("HTL1");
  const GENESIS_TAG = enc.encode("hashtrail/genesis/v1");
  const KIND_KEY_CREATED = 3;
  const SIG_PREFIX = "\u2014 ";
  // hashtrail.ledger.proof _MAX_CHAIN
  const MAX_CHAIN = 1 << 20;
  // hashtrail.formats.enrollment: enrolled_at < 2^63 (a later time no text carries)
  const ENROLL_MAX_AT = 1n << 63n;
  // the last second of year 9999: a later enrollment time is shown as unix seconds
  // (hashtrail.ledger.proof.ProofCheck.enrollment_line)
  const MAX_SHOWN_AT = 253402300799;

  class StepError extends Error {}
  const fail = (msg) => { throw new StepError(msg); };

  function hex(s, what, size) {
    if (typeof s !== "string" || !/^(?:[0-9a-f]{2})*$/.test(s)) fail(`${what} is not lower-case hex of whole bytes`);
    if (size !== undefined && s.length !== 2 * size) fail(`${what} is not ${size} bytes`);
    const b = new Uint8Array(s.length / 2);
    for (let i = 0; i < b.length; i++) b[i] = parseInt(s.substr(2 * i, 2), 16);
    return b;
  }
  const toHex = (b) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  const cat = (...parts) => {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let o = 0;
    for (const p of parts) { out.set(p, o); o += p.length; }
    return out;
  };
  const eq = (a, b) => a.length === b.length && a.every((x, i) => x === b[i]);
  const sha256 = async (b) => new Uint8Array(await crypto.subtle.digest("SHA-256", b));

  function b64(text, what) {
    let raw;
    try { raw = Uint8Array.from(atob(text), (c) => c.charCodeAt(0)); }
    catch (e) { fail(`${what}: bad base64`); }
    if (btoa(String.fromCharCode(...raw)) !== text) fail(`${what}: non-canonical base64`);
    return raw;
  }

  // A number of the proof's JSON written with a fraction or an exponent: Python's json
  // reads it as a float, never an integer, whatever its value (1700000000.0, 1.7e9)
  class JSONFloat { constructor(text) { this.text = text; } }
  const JSON_WS = /[ \t\n\r]*/y;
  const JSON_NUM = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/y;
  const JSON_CHARS = /[^"\\\u0000-\u001f]*/y;
  const JSON_ESC = new Map([['"', '"'], ["\\", "\\"], ["/", "/"], ["b", "\b"], ["f", "\f"],
                            ["n", "\n"], ["r", "\r"], ["t", "\t"]]);
  const JSON_LITERALS = [["true", true], ["false", false], ["null", null],
                         ["NaN", new JSONFloat("NaN")], ["Infinity", new JSONFloat("Infinity")],
                         ["-Infinity", new JSONFloat("-Infinity")]];
  const JSON_MAX_DEPTH = 500;

  // parseJSON(text): the proof's JSON text as hashtrail.ledger.proof.load_proof reads it
  // (Python's json, a field named twice refused): an integer is a number, or a BigInt
  // beyond 2^53 (Python's are exact); a number with a fraction or an exponent, NaN or
  // Infinity is a JSONFloat; an object's fields are its own (a "__proto__" field too)
  function parseJSON(text) {
    if (typeof text !== "string") fail("the proof is not JSON text");
    let i = 0;
    const bad = (what) => fail(`not JSON: ${what} at character ${i}`);
    const ws = () => { JSON_WS.lastIndex = i; JSON_WS.exec(text); i = JSON_WS.lastIndex; };
    function string() {
      i++;
      let out = "";
      for (;;) {
        JSON_CHARS.lastIndex = i;
        JSON_CHARS.exec(text);
        out += text.slice(i, JSON_CHARS.lastIndex);
        i = JSON_CHARS.lastIndex;
        const c = text[i];
        if (c === '"') { i++; return out; }
        if (c !== "\\") bad(c === undefined ? "unterminated string" : "control character in a string");
        const e = text[i + 1];
        if (JSON_ESC.has(e)) { out += JSON_ESC.get(e); i += 2; continue; }
        const u = text.slice(i + 2, i + 6);
        if (e !== "u" || !/^[0-9a-fA-F]{4}$/.test(u)) bad("bad escape");
        out += String.fromCharCode(parseInt(u, 16));
        i += 6;
      }
    }
    function value(depth) {
      if (depth > JSON_MAX_DEPTH) bad("nested too deeply");
      ws();
      const c = text[i];
      if (c === "{" || c === "[") {
        const obj = c === "{", close = obj ? "}" : "]", out = obj ? {} : [], seen = new Set();
        i++;
        ws();
        if (text[i] === close) { i++; return out; }
        for (;;) {
          ws();
          if (obj) {
            if (text[i] !== '"') bad("expected a field name in double quotes");
            const k = string();
            if (seen.has(k)) fail(`a JSON object names one field twice (${JSON.stringify(k)})`);
            seen.add(k);
            ws();
            if (text[i] !== ":") bad("expected ':'");
            i++;
            Object.defineProperty(out, k, { value: value(depth + 1), enumerable: true, writable: true, configurable: true });
          } else out.push(value(depth + 1));
          ws();
          if (text[i] === ",") { i++; continue; }
          if (text[i] === close) { i++; return out; }
          bad(`expected ',' or '${close}'`);
        }
      }
      if (c === '"') return string();
      for (const [word, v] of JSON_LITERALS) {
        if (text.startsWith(word, i)) { i += word.length; return v; }
      }
      JSON_NUM.lastIndex = i;
      const m = JSON_NUM.exec(text);
      if (!m) bad(c === undefined ? "no value" : "expected a value");
      i = JSON_NUM.lastIndex;
      if (m[1] !== undefined || m[2] !== undefined) return new JSONFloat(m[0]);
      const n = Number(m[0]);
      return Number.isSafeInteger(n) ? n + 0 : BigInt(m[0]);
    }
    const v = value(0);
    ws();
    if (i !== text.length) bad("extra data");
    return v;
  }

  // an unsigned integer this page computes with (a tree size, leaf index or seq)
  function uint(v, what) {
    if (typeof v === "bigint" && v >= 0n) fail(`${what} ${v} is beyond what this page checks (2^53)`);
    if (!Number.isSafeInteger(v) || v < 0) fail(`${what} is not an unsigned integer`);
    return v;
  }

  const isObject = (v) => typeof v === "object" && v !== null && !Array.isArray(v);
  function only(d, keys, where) {
    if (!isObject(d)) fail(`${where} is not an object`);
    const extra = Object.keys(d).filter((k) => !keys.includes(k)).sort();
    if (extra.length) fail(`${where} has unknown fields ${JSON.stringify(extra)}`);
    return d;
  }
  function field(d, key, where) {
    if (!Object.prototype.hasOwnProperty.call(d, key)) fail(`${where} has no field '${key}'`);
    return d[key];
  }

  // the proof's enrollment (hashtrail.ledger.proof: _ENROLL_KEYS, _enrollment_signature)
  async function parseEnrollment(e, format) {
    only(e, format === FORMATS[0] ? ENROLL_KEYS_3 : ENROLL_KEYS_2, "enrollment");
    for (const k of ["label", "board", "fw"]) {
      if (typeof field(e, k, "enrollment") !== "string") fail(`enrollment ${k} is not a string`);
    }
    const at = field(e, "enrolled_at", "enrollment");
    if (!(typeof at === "bigint" ? at >= 0n : Number.isSafeInteger(at) && at >= 0)) fail("enrollment enrolled_at is not an unsigned integer");
    const collector = field(e, "collector", "enrollment");
    if (collector !== null && typeof collector !== "string") fail("enrollment collector is not a string");
    const out = { label: e.label, board: e.board, fw: e.fw, enrolledAt: e.enrolled_at, collector, sig: null };
    if (format !== FORMATS[0]) return out;
    const s = field(e, "signature", "enrollment");
    if (s === null) return out;
    only(s, ["key", "sig"], "enrollment signature");
    const text = field(s, "key", "enrollment signature");
    if (typeof text !== "string") fail("enrollment signature key is not a string");
    let key;
    try { key = await parseVerifierKey(text, "enrollment signature key"); } catch (err) {
      fail(`enrollment signature key is not a collector verifier key: ${err.message}`);
    }
    if (key.text !== text) fail("enrollment signature key must be an Ed25519 note key (<name>+<key id>+<base64>), as `hashtrail export --show-key` prints it");
    out.sig = { key, sig: hex(field(s, "sig", "enrollment signature"), "enrollment signature", 64) };
    return out;
  }

  // hashtrail.formats.enrollment.enrollment_text: the bytes the collector signed, or
  // null when a field cannot be written so (nothing signed it)
  const CONTROL = /[\u0000-\u001f\u007f]/;
  const LONE_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;
  function enrollmentText(id, pub, e) {
    for (const v of [e.label, e.board, e.fw]) {
      if ([...v].length > ENROLL_MAX_TEXT || CONTROL.test(v) || LONE_SURROGATE.test(v)) return null;
    }
    if (BigInt(e.enrolledAt) >= ENROLL_MAX_AT) return null;
    return enc.encode(`${ENROLL_CONTEXT}\ndevice ${id}\npub ${toHex(pub)}\nlabel ${e.label}\n` +
      `board ${e.board}\nfw ${e.fw}\nenrolled_at ${e.enrolledAt}\n`);
  }

  // the proof's fields, strictly typed (the "input" step)
  async function parse(input) {
    const doc = typeof input === "string" ? parseJSON(input) : input;
    if (!isObject(doc)) fail("the proof is not a JSON object");
    // no field a reader could take differently (hashtrail.ledger.proof: _KEYS, _only)
    only(doc, PROOF_KEYS, "proof");
    if (!FORMATS.includes(doc.format) || doc.type !== "inclusion") fail("not a hashtrail-proof/3 (or /2) inclusion proof");
    const d = only(field(doc, "device", "proof"), ["id", "pub", "fingerprint"], "device");
    const ds = field(doc, "device_signature", "proof");
    if (!isObject(ds)) fail("device_signature is not an object");
    const p = {
      format: doc.format, leaf: hex(doc.leaf, "leaf"), index: uint(doc.leaf_index, "leaf_index"),
      size: uint(doc.tree_size, "tree_size"), root: hex(doc.root, "root", 32),
      path: Array.isArray(doc.path) ? doc.path.map((h) => hex(h, "path hash", 32)) : fail("path is not a list"),
      checkpoint: typeof doc.checkpoint === "string" ? doc.checkpoint : fail("checkpoint is not text"),
      // as in Python, a proof without verifier_key names the key you pinned
      verifierKey: !Object.prototype.hasOwnProperty.call(doc, "verifier_key") ? null
        : typeof doc.verifier_key === "string" ? doc.verifier_key : fail("verifier_key is not text"),
      pub: hex(field(d, "pub", "device"), "device pub", 65), id: field(d, "id", "device"),
      fingerprint: field(d, "fingerprint", "device"), kind: field(ds, "kind", "device_signature"),
    };
    if (typeof p.id !== "string") fail("device id is not a string");
    if (typeof p.fingerprint !== "string") fail("device fingerprint is not a string");
    if (!/^[0-9a-f]{32}$/.test(p.id) || !/^[0-9a-f]{64}$/.test(p.fingerprint)) fail("device id and fingerprint must be 32 and 64 lower-case hex");
    if (p.kind === "entry") {
      only(ds, ["kind", "sig"], "device_signature");
      p.sig = hex(ds.sig, "device signature", 64);
    } else if (p.kind === "checkpoint") {
      only(ds, ["kind", "cose", "chain"], "device_signature");
      p.cose = hex(ds.cose, "device checkpoint");
      if (!Array.isArray(ds.chain) || ds.chain.length > MAX_CHAIN) fail("device_signature chain is not a list of entries");
      p.chain = ds.chain.map((c) => hex(c, "chain entry"));
    } else fail(`unknown device signature kind ${JSON.stringify(p.kind)}`);
    p.enrollment = await parseEnrollment(field(doc, "enrollment", "proof"), doc.format);
    return p;
  }

  function parseLeaf(leaf) {
    const head = 4 + 16 + 8 + 32;
    if (leaf.length <= head || !eq(leaf.subarray(0, 4), LEAF_TAG)) fail("not a hashtrail ledger leaf");
    const dv = new DataView(leaf.buffer, leaf.byteOffset);
    const hi = dv.getUint32(20), lo = dv.getUint32(24);
    if (hi >= 0x200000) fail("leaf seq too large");
    return { id: toHex(leaf.subarray(4, 20)), seq: hi * 0x100000000 + lo,
             hash: leaf.subarray(28, 60), entry: leaf.subarray(60) };
  }

  function parseEntry(raw) {
    let m;
    try { m = HashtrailCBOR.decode(raw); } catch (e) { fail(`entry bytes: ${e.message}`); }
    if (!(m instanceof Map) || m.get(0) !== 1) fail("entry bytes: not a version 1 entry");
    const prev = m.get(5);
    if (!(prev instanceof Uint8Array) || prev.length !== 32) fail("entry bytes: prev is not 32 bytes");
    return { seq: uint(m.get(1), "entry seq"), prev, kind: m.get(7), body: m.get(8) };
  }

  async function ecdsaKey(pub) {
    try {
      return await crypto.subtle.importKey("raw", pub, { name: "ECDSA", namedCurve: "P-256" }, false, ["verify"]);
    } catch (e) { fail("device pub is not a P-256 key"); }
  }
  async function ecdsaOk(key, sig, message) {
    return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, sig, message);
  }

  // the COSE_Sign1 device checkpoint: [protected, {}, payload, signature] under tag 18
  function parseCose(raw) {
    let msg;
    try { msg = HashtrailCBOR.decode(raw); } catch (e) { fail(`device checkpoint: ${e.message}`); }
    if (!msg || msg.tag !== 18 || !Array.isArray(msg.value) || msg.value.length !== 4) fail("device checkpoint is not a tagged COSE_Sign1");
    const [prot, unprot, payload, sig] = msg.value;
    if (!(prot instanceof Uint8Array) || !(payload instanceof Uint8Array) || !(sig instanceof Uint8Array) || sig.length !== 64) fail("device checkpoint: malformed COSE_Sign1");
    if (!(unprot instanceof Map) || unprot.size) fail("device checkpoint: unprotected header must be empty");
    const hdr = HashtrailCBOR.decode(prot), p = HashtrailCBOR.decode(payload);
    if (!(hdr instanceof Map) || hdr.get(1) !== -7) fail("device checkpoint: not ES256");
    return { prot, payload, sig, kid: hdr.get(4), device: p.get(1), seq: p.get(2), head: p.get(3) };
  }
  function bstr(b) {
    const n = b.length;
    const head = n < 24 ? [0x40 | n] : n < 256 ? [0x58, n] : n < 65536 ? [0x59, n >> 8, n & 255] : fail("COSE part too large");
    return cat(Uint8Array.from(head), b);
  }
  const sigStructure = (prot, payload) =>
    cat(Uint8Array.from([0x84, 0x6a]), enc.encode("Signature1"), bstr(prot), Uint8Array.from([0x40]), bstr(payload));

  // RFC 9162 2.1.3.2
  async function rootFromPath(leafHash, index, size, path) {
    if (index >= size) fail(`leaf index ${index} is not below tree size ${size}`);
    let fn = index, sn = size - 1, r = leafHash;
    for (const p of path) {
      if (sn === 0) fail("the path is longer than the tree is deep");
      if (fn % 2 === 1 || fn === sn) {
        r = await sha256(cat(Uint8Array.of(1), p, r));
        if (fn % 2 === 0) while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
      } else {
        r = await sha256(cat(Uint8Array.of(1), r, p));
      }
      fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
    }
    if (sn !== 0) fail("the path is shorter than the tree is deep");
    return r;
  }

  function parseNote(text) {
    const cut = text.lastIndexOf("\n\n");
    if (cut < 0) fail("signed note has no blank line before its signatures");
    const body = text.slice(0, cut + 1), block = text.slice(cut + 2);
    if (!block.endsWith("\n")) fail("signature block must end with a newline");
    const sigs = block.slice(0, -1).split("\n").map((line) => {
      if (!line.startsWith(SIG_PREFIX)) fail("signature line must start with an em dash and a space");
      const f = line.slice(SIG_PREFIX.length).split(" ");
      if (f.length !== 2) fail("signature line is `\u2014 <name> <base64>`");
      const raw = b64(f[1], "signature");
      return { name: f[0], keyId: raw.subarray(0, 4), sig: raw.subarray(4) };
    });
    return { body, sigs };
  }

  async function parseVerifierKey(text, what = "the pinned ledger key") {
    // <name>+<key id>+<base64>: the name has no "+", space or control character
    // (hashtrail.formats.note), the base64 may have "+"
    const m = /^([^+]+)\+([0-9a-f]{8})\+(.+)$/.exec((text || "").trim());
    if (!m) fail(`${what} is not <name>+<key id>+<base64 key>`);
    const parts = m.slice(1);
    if ([...parts[0]].some((c) => c.codePointAt(0) < 0x21) || LONE_SURROGATE.test(parts[0])) fail(`${what} has a bad key name`);
    const raw = b64(parts[2], what);
    if (raw.length !== 33 || raw[0] !== 1) fail(`${what} is not an Ed25519 key`);
    const pub = raw.subarray(1);
    const kid = (await sha256(cat(enc.encode(parts[0] + "\n"), Uint8Array.of(1), pub))).subarray(0, 4);
    if (toHex(kid) !== parts[1]) fail(`${what}'s id does not match its name and key`);
    return { name: parts[0], keyId: kid, pub, text: text.trim(), who: `${parts[0]}+${parts[1]}` };
  }

  // the collector keys the user pinned: text, one or more keys apart by white space
  async function parseCollectorKeys(text) {
    const keys = [];
    for (const k of (text || "").split(/\s+/).filter(Boolean)) keys.push(await parseVerifierKey(k, `the pinned collector key ${k}`));
    return keys;
  }

  // what the enrollment rests on, as hashtrail.ledger.proof.ProofCheck.enrollment_line
  function enrollmentLine(e, signer, trusted) {
    const t = Number(e.enrolledAt);
    const at = t <= MAX_SHOWN_AT ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : `unix time ${e.enrolledAt}`;
    const what = `label ${JSON.stringify(e.label)}, board ${e.board}, enrolled at ${at}`;
    if (!signer) return `enrollment not signed (the operator's statement): ${what}` + (e.collector ? ` by collector ${e.collector}` : "");
    if (trusted) return `enrollment signed by collector ${signer}, a key you trust: ${what}`;
    return `enrollment signed by collector ${signer} (the proof's key; pin a collector key to require one you trust): ${what}`;
  }

  // check(text, pinnedKey, wantDevice, collectorKeys) ->
  //   {ok, steps: [{step, ok, detail}], enrollment: {signer, trusted, line} | null}
  // text: the proof's JSON text (an object already parsed is taken as it is, but has
  // lost how its numbers were written: the pages give the text).
  // collectorKeys: the collector keys the user trusts (text, apart by white space), or
  // none: then a signed enrollment is reported as signed by the proof's key.
  async function check(text, pinnedKey, wantDevice, collectorKeys) {
    const results = [];
    const run = async (step, fn) => {
      try {
        const detail = await fn();
        results.push({ step, ok: true, detail: detail || "" });
      } catch (e) {
        results.push({ step, ok: false, detail: e instanceof StepError ? e.message : `${e.name}: ${e.message}` });
      }
    };
    if (!globalThis.crypto || !crypto.subtle) {
      results.push({ step: "input", ok: false, detail: "WebCrypto is not available: open the page over http://127.0.0.1 or https" });
      return { ok: false, steps: results };
    }
    let p = null;
    await run("input", async () => { p = await parse(text); return `a ${p.format} inclusion proof`; });
    if (!p) {
      for (const s of STEPS.slice(1)) results.push({ step: s, ok: false, detail: "not run: the proof is malformed" });
      return { ok: false, steps: results, enrollment: null };
    }
    let leaf = null, key = null;
    await run("device key", async () => {
      key = await ecdsaKey(p.pub);
      const fp = toHex(await sha256(p.pub));
      if (fp !== p.fingerprint) fail(`device fingerprint ${p.fingerprint} is not SHA-256 of the device key (${fp})`);
      if (fp.slice(0, 32) !== p.id) fail(`device id ${p.id} is not the key's id ${fp.slice(0, 32)}`);
      if (wantDevice && wantDevice !== p.id) fail(`the proof is for device ${p.id}, not device ${wantDevice} you asked for`);
      return `fingerprint ${fp}`;
    });
    await run("leaf", async () => {
      const lf = parseLeaf(p.leaf);
      if (lf.id !== p.id) fail(`leaf names device ${lf.id}, not ${p.id}`);
      if (!eq(await sha256(lf.entry), lf.hash)) fail("leaf entry hash is not SHA-256 of its entry bytes");
      const e = parseEntry(lf.entry);
      if (e.seq !== lf.seq) fail(`leaf names seq ${lf.seq}, its entry says seq ${e.seq}`);
      if (lf.seq === 0) {
        const g = await sha256(cat(GENESIS_TAG, p.pub));
        const pub = e.body instanceof Map ? e.body.get(1) : null;
        if (!eq(e.prev, g) || e.kind !== KIND_KEY_CREATED || !(pub instanceof Uint8Array) || !eq(pub, p.pub)) fail("entry 0 is not this key's key-created entry");
      }
      leaf = lf;
      return `seq ${lf.seq}, entry hash ${toHex(lf.hash)}`;
    });
    await run("device signature", async () => {
      const lf = leaf || parseLeaf(p.leaf);
      const k = key || fail("no device key to check with");
      if (p.kind === "entry") {
        if (!(await ecdsaOk(k, p.sig, lf.entry))) fail(`the device's signature over entry ${lf.seq} does not verify with its key`);
        return "ECDSA P-256 over SHA-256 of the entry (its own per-entry signature)";
      }
      let head = lf.hash, s = lf.seq;
      for (const link of p.chain) {
        const n = parseEntry(link);
        if (n.seq !== s + 1 || !eq(n.prev, head)) fail(`chain entry ${s + 1} does not link to entry ${s}`);
        head = await sha256(link); s += 1;
      }
      const c = parseCose(p.cose);
      if (!(c.kid instanceof Uint8Array) || toHex(c.kid) !== p.id) fail("device checkpoint is from another device");
      if (!(await ecdsaOk(k, c.sig, sigStructure(c.prot, c.payload)))) fail("device checkpoint: bad signature");
      if (c.seq !== s || !(c.head instanceof Uint8Array) || !eq(c.head, head)) fail(`device checkpoint covers seq ${c.seq}, not the chain head at seq ${s}`);
      return `device checkpoint at seq ${c.seq} (COSE ES256) and ${p.chain.length} chain links to its head`;
    });
    await run("inclusion", async () => {
      const lh = await sha256(cat(Uint8Array.of(0), p.leaf));
      const r = await rootFromPath(lh, p.index, p.size, p.path);
      if (!eq(r, p.root)) fail("the path does not lead to the proof's root");
      return `leaf ${p.index} of ${p.size}, ${p.path.length} hashes to root ${toHex(p.root)}`;
    });
    let note = null;
    await run("checkpoint", async () => {
      note = parseNote(p.checkpoint);
      const lines = note.body.slice(0, -1).split("\n");
      if (lines.length < 3) fail("checkpoint needs origin, tree size and root hash lines");
      const [origin, sizeS, rootS] = lines;
      if (!/^(0|[1-9][0-9]*)$/.test(sizeS)) fail(`bad tree size ${JSON.stringify(sizeS)}`);
      const root = b64(rootS, "root hash");
      if (Number(sizeS) !== p.size || !eq(root, p.root)) fail("the proof's root and tree size differ from its checkpoint's");
      return `${origin}, tree size ${sizeS}`;
    });
    await run("ledger signature", async () => {
      const k = await parseVerifierKey(pinnedKey);
      if (p.verifierKey !== null && p.verifierKey !== k.text) fail(`the proof names ledger key ${p.verifierKey}, not the one you pinned`);
      const n = note || parseNote(p.checkpoint);
      const line = n.sigs.find((s) => s.name === k.name && eq(s.keyId, k.keyId));
      if (!line) fail("no signature by the pinned key on the checkpoint");
      if (line.sig.length !== 64) fail(`signature by ${k.name} is not 64 bytes`);
      const pub = await crypto.subtle.importKey("raw", k.pub, { name: "Ed25519" }, false, ["verify"]);
      if (!(await crypto.subtle.verify({ name: "Ed25519" }, pub, line.sig, enc.encode(n.body)))) fail(`signature by ${k.name} does not verify`);
      return `Ed25519 signed note by your pinned key ${k.name}+${toHex(k.keyId)}`;
    });
    let enrollment = null;
    await run("enrollment", async () => {
      const e = p.enrollment;
      const mine = await parseCollectorKeys(collectorKeys);
      if (!e.sig) {
        if (mine.length) fail("the enrollment is not signed by a collector (it is the ledger operator's statement), and you pinned a collector key to require one");
        enrollment = { signer: null, trusted: false, line: enrollmentLine(e, null, false) };
        return enrollment.line;
      }
      const { key: v, sig } = e.sig;
      const text = enrollmentText(p.id, p.pub, e);
      let good = false;
      if (text) {
        const pub = await crypto.subtle.importKey("raw", v.pub, { name: "Ed25519" }, false, ["verify"]);
        good = await crypto.subtle.verify({ name: "Ed25519" }, pub, sig, text);
      }
      if (!good) fail(`the enrollment signature by collector ${v.who} does not verify over device ${p.id}'s enrollment in the proof: its label, board, firmware or time was changed after the collector signed, or the signature is another device's`);
      if (mine.length && !mine.some((k) => k.name === v.name && eq(k.pub, v.pub))) fail(`the enrollment is signed by collector key ${v.who}, not by a collector key you pinned`);
      enrollment = { signer: v.who, trusted: mine.length > 0, line: enrollmentLine(e, v.who, mine.length > 0) };
      return enrollment.line;
    });
    return { ok: results.every((r) => r.ok), steps: results, enrollment };
  }

  // enrollmentBytes(text): the bytes a /3 proof's enrollment signature covers, as this
  // page rebuilds them (null when no text can carry the fields); for cross-checks
  async function enrollmentBytes(text) {
    const p = await parse(text);
    return enrollmentText(p.id, p.pub, p.enrollment);
  }

  return { check, enrollmentBytes, parseJSON, STEPS };
})();
