// chainaudit web page: plain JavaScript, no build step, nothing fetched but this server's API
// and the chain endpoint the user trusts.
//
// The verifier (first half of this file) is self-contained: given a proof bundle (version 1,
// chainaudit/schemas/proof-bundle-v1.schema.json) and a JSON-RPC endpoint it recomputes the
// leaf (RFC 8785 + RFC 9162 §2.1.1), folds the inclusion proof (RFC 9162 §2.1.3.2) and reads
// the anchor from the chain. It never asks this server whether a bundle is valid.
"use strict";

(() => {
  // ---------------------------------------------------------------------------------------
  // Constants
  // ---------------------------------------------------------------------------------------

  // The browser has no keccak-256, so the two chain constants are precomputed:
  //   Web3.keccak(text="checkpoint(uint256)")[:4]                  -> 0xed64bab2
  //   Web3.keccak(text="CheckpointAnchored(uint256,uint64,bytes32)") -> 0xafc92bb3...
  // tests/web/test_web_routes.py re-derives both from the strings and compares.
  const CHECKPOINT_SELECTOR = "0xed64bab2";
  const CHECKPOINT_ANCHORED_TOPIC =
    "0xafc92bb3d8a4f1c19dc065f62673c3570e19380e0b916fffdf845b828848c0b2";

  const CHAIN_CHECKS = ["chain_id", "contract", "checkpoint", "block", "transaction"];
  const MAX_DEPTH = 32; // as chainaudit/canonical.py
  const MAX_JSON_DEPTH = 64; // as chainaudit/jsonlimits.py: checked before JSON.parse
  const MAX_INCLUSION_HASHES = 64;
  const MAX_CONSISTENCY_HASHES = 128;
  const MAX_TREE_SIZE = 2 ** 48 - 1;
  const RPC_TIMEOUT_MS = 10000;
  const KEY_STORAGE = "chainaudit.apiKey";
  const HASH_RE = /^0x[0-9a-fA-F]{64}$/;
  const ADDRESS_RE = /^0x[0-9a-fA-F]{40}$/;
  const BUNDLE_FIELDS = new Set(["version", "record", "leaf_hash", "leaf_index", "tree_size",
    "inclusion_proof", "checkpoint", "anchor", "consistency", "withheld", "erasure",
    "checkpoint_note"]);
  const ERASURE_FIELDS = ["record", "leaf_hash", "leaf_index", "inclusion_proof"];
  // checkpoint_note (the log's signed C2SP checkpoint) is read but not checked here: its
  // Ed25519 signature needs the log's verifier key (`chainaudit verify --log-key`).

  class BundleError extends Error {}       // the input is not a usable bundle
  class CanonicalError extends Error {}    // the record is outside the RFC 8785 domain we sign
  class ChainUnavailable extends Error {}  // the endpoint did not answer: nothing is proved
  class RpcError extends Error {}          // the endpoint refused a call: that check fails

  // ---------------------------------------------------------------------------------------
  // RFC 8785 (JCS) for chainaudit's value domain: no floats, integers within ±(2^53−1)
  // ---------------------------------------------------------------------------------------

  // JavaScript compares strings by UTF-16 code units, which is the order RFC 8785 §3.2.3
  // prescribes for object members.
  const byCodeUnits = (a, b) => (a < b ? -1 : a > b ? 1 : 0);

  function checkText(text, path) {
    // A lone surrogate cannot be encoded as UTF-8 (TextEncoder would silently replace it).
    const wellFormed = typeof text.isWellFormed === "function"
      ? text.isWellFormed()
      : !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);
    if (!wellFormed) throw new CanonicalError(`${path}: string holds a lone surrogate`);
  }

  function canonicalJson(value, path = "$", depth = 0) {
    if (value === null) return "null";
    if (value === true) return "true";
    if (value === false) return "false";
    switch (typeof value) {
      case "string":
        checkText(value, path);
        return JSON.stringify(value); // RFC 8785 §3.2.2.2: ECMAScript string serialisation
      case "number":
        if (!Number.isInteger(value)) {
          throw new CanonicalError(`${path}: floating-point numbers are not allowed`);
        }
        if (!Number.isSafeInteger(value)) {
          throw new CanonicalError(`${path}: integer ${value} is outside ±(2^53−1)`);
        }
        return Object.is(value, -0) ? "0" : String(value); // §3.2.2.3, integers only
      case "object": {
        if (depth >= MAX_DEPTH) {
          throw new CanonicalError(`${path}: nesting deeper than ${MAX_DEPTH} levels`);
        }
        if (Array.isArray(value)) {
          const items = value.map((v, i) => canonicalJson(v, `${path}[${i}]`, depth + 1));
          return `[${items.join(",")}]`;
        }
        const members = Object.keys(value).sort(byCodeUnits).map((key) => {
          checkText(key, path);
          return `${JSON.stringify(key)}:${canonicalJson(value[key], `${path}.${key}`,
            depth + 1)}`;
        });
        return `{${members.join(",")}}`;
      }
      default:
        throw new CanonicalError(`${path}: ${typeof value} is not a JSON value`);
    }
  }

  const canonicalBytes = (value) => new TextEncoder().encode(canonicalJson(value));

  // ---------------------------------------------------------------------------------------
  // Bytes, hex and SHA-256 (Web Crypto)
  // ---------------------------------------------------------------------------------------

  function hexToBytes(hex) {
    const digits = hex.slice(2);
    const out = new Uint8Array(digits.length / 2);
    for (let i = 0; i < out.length; i += 1) {
      out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
    }
    return out;
  }

  const bytesToHex = (bytes) =>
    `0x${Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")}`;

  function sameBytes(a, b) {
    if (a.length !== b.length) return false;
    return a.every((value, i) => value === b[i]);
  }

  async function sha256(...parts) {
    if (!globalThis.crypto || !crypto.subtle) {
      throw new Error("Web Crypto is not available: open this page over https or from " +
        "localhost/127.0.0.1");
    }
    const data = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let offset = 0;
    for (const part of parts) {
      data.set(part, offset);
      offset += part.length;
    }
    return new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  }

  // RFC 9162 §2.1.1: leaf = HASH(0x00 || data), node = HASH(0x01 || left || right).
  const hashLeaf = (data) => sha256(Uint8Array.of(0), data);
  const hashChildren = (left, right) => sha256(Uint8Array.of(1), left, right);

  // RFC 9162 §2.1.3.2: the root that `proof` implies for leaf `index` of a tree of `size`.
  // Sizes reach 2^48, past JavaScript's 32-bit bitwise operators, hence BigInt.
  async function rootFromInclusionProof(leafHash, index, size, proof) {
    let fn = BigInt(index);
    let sn = BigInt(size) - 1n;
    if (fn > sn) throw new BundleError(`leaf index ${index} is outside a tree of ${size}`);
    let r = leafHash;
    for (const p of proof) {
      if (sn === 0n) throw new BundleError("the inclusion proof is too long");
      if ((fn & 1n) === 1n || fn === sn) {
        r = await hashChildren(p, r);
        if ((fn & 1n) === 0n) {
          while (fn !== 0n && (fn & 1n) === 0n) {
            fn >>= 1n;
            sn >>= 1n;
          }
        }
      } else {
        r = await hashChildren(r, p);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new BundleError("the inclusion proof is too short");
    return r;
  }

  // RFC 9162 §2.1.4.2: check that the tree of size `n` with `newRoot` extends the tree of size
  // `m` with `oldRoot`; returns nothing, throws BundleError naming what is wrong.
  async function verifyConsistency(m, n, proof, oldRoot, newRoot) {
    let fn = BigInt(m);
    let sn = BigInt(n);
    if (fn > sn) throw new BundleError(`size ${m} is larger than size ${n}`);
    if (fn === 0n) throw new BundleError("a consistency proof from size 0 is meaningless");
    if (fn === sn) {
      if (proof.length) throw new BundleError("a proof between equal sizes must be empty");
      if (!sameBytes(oldRoot, newRoot)) throw new BundleError("the roots differ at one size");
      return;
    }
    if (!proof.length) throw new BundleError("the consistency proof is empty");
    // When m is a power of two its root is the proof's implicit first node.
    const path = (fn & (fn - 1n)) === 0n ? [oldRoot, ...proof] : proof;
    fn -= 1n;
    sn -= 1n;
    while ((fn & 1n) === 1n) {
      fn >>= 1n;
      sn >>= 1n;
    }
    let fr = path[0];
    let sr = path[0];
    for (const c of path.slice(1)) {
      if (sn === 0n) throw new BundleError("the consistency proof is too long");
      if ((fn & 1n) === 1n || fn === sn) {
        fr = await hashChildren(c, fr);
        sr = await hashChildren(c, sr);
        if ((fn & 1n) === 0n) {
          while (fn !== 0n && (fn & 1n) === 0n) {
            fn >>= 1n;
            sn >>= 1n;
          }
        }
      } else {
        sr = await hashChildren(sr, c);
      }
      fn >>= 1n;
      sn >>= 1n;
    }
    if (sn !== 0n) throw new BundleError("the consistency proof is too short");
    if (!sameBytes(fr, oldRoot)) {
      throw new BundleError("the consistency proof does not lead to the older root");
    }
    if (!sameBytes(sr, newRoot)) {
      throw new BundleError("the consistency proof does not lead to the checkpoint's root");
    }
  }

  // ---------------------------------------------------------------------------------------
  // Reading a bundle (shape only; verifying is below)
  // ---------------------------------------------------------------------------------------

  function isObject(value) {
    return typeof value === "object" && value !== null && !Array.isArray(value);
  }

  function integer(value, where, low, high) {
    if (!Number.isSafeInteger(value)) throw new BundleError(`${where} must be an integer`);
    if (value < low || value > high) {
      throw new BundleError(`${where} must be between ${low} and ${high}, not ${value}`);
    }
    return value;
  }

  function hash(value, where) {
    if (typeof value !== "string" || !HASH_RE.test(value)) {
      throw new BundleError(`${where} must be 0x followed by 64 hex digits`);
    }
    return hexToBytes(value);
  }

  // Before JSON.parse: what it would silently resolve. JSON.parse keeps the last of two equal
  // keys (a bundle could then show one record and hash another) and rounds number literals to
  // the nearest double (124999.99999999999999 becomes 125000), where chainaudit's Python
  // verifier refuses both. This tokenizer reads the raw text once and refuses any repeated
  // key in an object, any number literal that is not an exact integer (a fraction, an
  // exponent, or beyond ±(2^53−1)), and nesting deeper than MAX_JSON_DEPTH. It does not check
  // the rest of the grammar: JSON.parse does, right after.
  const STRING_TOKEN = /"(?:[^"\\]|\\.)*"/y;
  const NUMBER_TOKEN = /-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/y;

  function scanJson(text) {
    const stack = []; // one entry per open array or object: null, or {keys, expectKey}
    let i = 0;
    while (i < text.length) {
      const c = text[i];
      if (c === '"') {
        STRING_TOKEN.lastIndex = i;
        const match = STRING_TOKEN.exec(text);
        if (!match) return; // unterminated: JSON.parse reports it
        const top = stack[stack.length - 1];
        if (top && top.expectKey) {
          let key;
          try {
            key = JSON.parse(match[0]);
          } catch (error) {
            return; // an invalid escape: JSON.parse reports it
          }
          if (top.keys.has(key)) {
            throw new BundleError(`the key ${JSON.stringify(key)} appears twice in one ` +
              `object (at character ${i}): parsers disagree on which one counts, so the ` +
              "bundle is refused");
          }
          top.keys.add(key);
          top.expectKey = false;
        }
        i += match[0].length;
      } else if (c === "{" || c === "[") {
        if (stack.length >= MAX_JSON_DEPTH) {
          throw new BundleError(`the JSON nests deeper than ${MAX_JSON_DEPTH} levels ` +
            `(at character ${i})`);
        }
        stack.push(c === "{" ? { keys: new Set(), expectKey: true } : null);
        i += 1;
      } else if (c === "}" || c === "]") {
        stack.pop();
        i += 1;
      } else if (c === ",") {
        const top = stack[stack.length - 1];
        if (top) top.expectKey = true;
        i += 1;
      } else if (c === "-" || (c >= "0" && c <= "9")) {
        NUMBER_TOKEN.lastIndex = i;
        const match = NUMBER_TOKEN.exec(text);
        if (!match) return; // JSON.parse reports it
        const literal = match[0];
        if (match[1] !== undefined || match[2] !== undefined ||
            !Number.isSafeInteger(Number(literal))) {
          throw new BundleError(`the number ${literal} (at character ${i}) is not an exact ` +
            "integer within ±(2^53−1); amounts are integers in minor units or decimal strings");
        }
        i += literal.length;
      } else {
        i += 1;
      }
    }
  }

  function parseBundle(text) {
    let doc;
    scanJson(text);
    try {
      doc = JSON.parse(text);
    } catch (error) {
      throw new BundleError(`not valid JSON (${error.message})`);
    }
    if (!isObject(doc)) throw new BundleError("a bundle is a JSON object");
    const unknown = Object.keys(doc).filter((k) => !BUNDLE_FIELDS.has(k));
    if (unknown.length) throw new BundleError(`unknown field(s): ${unknown.join(", ")}`);
    if (doc.version !== 1) throw new BundleError("only bundle version 1 is understood");
    if ("checkpoint_note" in doc && (typeof doc.checkpoint_note !== "string" ||
        !doc.checkpoint_note.length || doc.checkpoint_note.length > 65536)) {
      throw new BundleError("checkpoint_note must be a string of 1-65536 characters");
    }
    if ("record" in doc && !isObject(doc.record)) {
      throw new BundleError("record must be a JSON object");
    }
    if (!Array.isArray(doc.inclusion_proof)) {
      throw new BundleError("inclusion_proof must be an array");
    }
    if (doc.inclusion_proof.length > MAX_INCLUSION_HASHES) {
      throw new BundleError(`inclusion_proof holds more than ${MAX_INCLUSION_HASHES} hashes`);
    }
    const cp = doc.checkpoint;
    const an = doc.anchor;
    const co = doc.consistency;
    let consistency = null;
    if (co !== undefined) {
      if (!isObject(co) || !Array.isArray(co.proof)) {
        throw new BundleError("consistency must be an object with a proof array");
      }
      if (co.proof.length > MAX_CONSISTENCY_HASHES) {
        throw new BundleError(`consistency.proof holds more than ${MAX_CONSISTENCY_HASHES} ` +
          "hashes");
      }
      consistency = {
        fromTreeSize: integer(co.from_tree_size, "consistency.from_tree_size", 1,
          MAX_TREE_SIZE),
        fromRoot: hash(co.from_root, "consistency.from_root"),
        proof: co.proof.map((h, i) => hash(h, `consistency.proof[${i}]`)),
      };
    }
    let erasure = null;
    if (doc.erasure !== undefined) {
      const er = doc.erasure;
      if ("record" in doc) throw new BundleError("a bundle carries a record or an erasure, not both");
      if (!isObject(er) || !isObject(er.record) || !Array.isArray(er.inclusion_proof)
          || Object.keys(er).some((k) => !ERASURE_FIELDS.includes(k))) {
        throw new BundleError("erasure must be an object with record, leaf_hash, leaf_index " +
          "and inclusion_proof");
      }
      if (er.inclusion_proof.length > MAX_INCLUSION_HASHES) {
        throw new BundleError(`erasure.inclusion_proof holds more than ${MAX_INCLUSION_HASHES} ` +
          "hashes");
      }
      erasure = {
        record: er.record,
        leafHash: hash(er.leaf_hash, "erasure.leaf_hash"),
        leafIndex: integer(er.leaf_index, "erasure.leaf_index", 0, MAX_TREE_SIZE - 1),
        proof: er.inclusion_proof.map((h, i) => hash(h, `erasure.inclusion_proof[${i}]`)),
      };
    }
    if (!isObject(cp)) throw new BundleError("checkpoint must be a JSON object");
    if (!isObject(an)) throw new BundleError("anchor must be a JSON object");
    if (typeof an.contract !== "string" || !ADDRESS_RE.test(an.contract)) {
      throw new BundleError("anchor.contract must be an address (0x and 40 hex digits)");
    }
    return {
      record: "record" in doc ? doc.record : null,
      leafHash: hash(doc.leaf_hash, "leaf_hash"),
      leafIndex: integer(doc.leaf_index, "leaf_index", 0, MAX_TREE_SIZE - 1),
      treeSize: integer(doc.tree_size, "tree_size", 1, MAX_TREE_SIZE),
      proof: doc.inclusion_proof.map((h, i) => hash(h, `inclusion_proof[${i}]`)),
      checkpoint: {
        treeSize: integer(cp.tree_size, "checkpoint.tree_size", 1, MAX_TREE_SIZE),
        root: hash(cp.root, "checkpoint.root"),
      },
      anchor: {
        chainId: integer(an.chain_id, "anchor.chain_id", 1, Number.MAX_SAFE_INTEGER),
        contract: an.contract,
        txHash: hash(an.tx_hash, "anchor.tx_hash"),
        blockNumber: integer(an.block_number, "anchor.block_number", 0, Number.MAX_SAFE_INTEGER),
        blockHash: hash(an.block_hash, "anchor.block_hash"),
        seq: integer(an.checkpoint_seq, "anchor.checkpoint_seq", 0, Number.MAX_SAFE_INTEGER),
      },
      consistency,
      erasure,
    };
  }

  // The checks a bundle gets, in order ("consistency" only when it carries a proof).
  const checkNames = (b) => ["record", "inclusion", ...(b.erasure ? ["erasure"] : []),
    ...(b.consistency ? ["consistency"] : []), ...CHAIN_CHECKS];

  // ---------------------------------------------------------------------------------------
  // JSON-RPC (the user's chain endpoint, called directly from the browser)
  // ---------------------------------------------------------------------------------------

  let rpcId = 0;

  async function rpc(url, method, params) {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), RPC_TIMEOUT_MS);
    let response;
    try {
      rpcId += 1;
      response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ jsonrpc: "2.0", id: rpcId, method, params }),
        credentials: "omit",
        cache: "no-store",
        signal: controller.signal,
      });
    } catch (error) {
      const why = error.name === "AbortError" ? `no answer in ${RPC_TIMEOUT_MS / 1000} s`
        : error.message;
      throw new ChainUnavailable(`cannot reach the chain endpoint ${url}: ${why}`);
    } finally {
      clearTimeout(timer);
    }
    if (!response.ok) {
      throw new ChainUnavailable(`the chain endpoint ${url} answered HTTP ${response.status}`);
    }
    let body;
    try {
      body = await response.json();
    } catch {
      throw new ChainUnavailable(`the chain endpoint ${url} did not answer JSON-RPC`);
    }
    if (body.error) throw new RpcError(`${method}: ${body.error.message || "refused"}`);
    return body.result;
  }

  const quantity = (n) => `0x${BigInt(n).toString(16)}`;
  const short = (bytes) => bytesToHex(bytes);

  // ---------------------------------------------------------------------------------------
  // The checks (same names, order and meaning as chainaudit/verify.py)
  // ---------------------------------------------------------------------------------------

  const pass = (name, detail) => ({ name, status: "pass", detail });
  const fail = (name, detail) => ({ name, status: "fail", detail });
  const skip = (name, detail) => ({ name, status: "skip", detail });

  function erasureSummary(record) {
    const p = isObject(record.payload) ? record.payload : {};
    const who = "approved_by" in p
      ? `requested by ${p.requested_by}, approved by ${p.approved_by}`
      : `by the data policy ${String(p.policy_sha256 || "").slice(0, 16)}… retention`;
    return `erased at ${record.timestamp} (${who}; basis: ${p.basis}; reason: ` +
      `${String(p.reason).slice(0, 200)})`;
  }

  async function checkErasure(b) {
    const e = b.erasure;
    let data;
    try {
      data = canonicalBytes(e.record);
    } catch (error) {
      if (!(error instanceof CanonicalError)) throw error;
      return fail("erasure", `the erasure record cannot be canonicalised: ${error.message}`);
    }
    if (!sameBytes(await hashLeaf(data), e.leafHash)) {
      return fail("erasure", "the erasure record does not hash to its leaf: it was altered");
    }
    const r = e.record;
    const p = r.payload;
    if (r.kind !== "admin" || r.id !== `erasure:${b.leafIndex}`
        || r.submitter !== "service:privacy" || !isObject(p) || p.type !== "erasure"
        || p.leaf_index !== b.leafIndex || p.leaf_hash !== short(b.leafHash)) {
      return fail("erasure", `the erasure record is not an erasure of leaf ${b.leafIndex} ` +
        `(${short(b.leafHash)}) by the privacy service (id erasure:${b.leafIndex}, kind ` +
        "admin, submitter service:privacy)");
    }
    if (e.leafIndex <= b.leafIndex) {
      return fail("erasure", "the erasure record precedes the record it erases");
    }
    if (e.leafIndex >= b.checkpoint.treeSize) {
      return fail("erasure", "the erasure record is not in the bundle's checkpoint");
    }
    let root;
    try {
      root = await rootFromInclusionProof(e.leafHash, e.leafIndex, b.checkpoint.treeSize,
        e.proof);
    } catch (error) {
      if (!(error instanceof BundleError)) throw error;
      return fail("erasure", `the erasure record is not in the checkpoint: ${error.message}`);
    }
    if (!sameBytes(root, b.checkpoint.root)) {
      return fail("erasure", "the erasure record is not in the checkpoint: its proof leads " +
        `to root ${short(root)}`);
    }
    return pass("erasure", `erased: leaf ${b.leafIndex}'s content was ` +
      `${erasureSummary(r)}; the erasure record (leaf ${e.leafIndex}) is in the same checkpoint`);
  }

  async function checkRecord(b) {
    if (b.record === null && b.erasure) {
      return skip("record", `erased: the record's content was erased ` +
        `(${erasureSummary(b.erasure.record)}); only its leaf hash is proved`);
    }
    if (b.record === null) {
      return skip("record", "skipped: the bundle carries no record (withheld or erased); " +
        "only the leaf hash is proved");
    }
    let data;
    try {
      data = canonicalBytes(b.record);
    } catch (error) {
      if (!(error instanceof CanonicalError)) throw error;
      return fail("record", `the record cannot be canonicalised (RFC 8785): ${error.message}`);
    }
    const leaf = await hashLeaf(data);
    const hashed = new TextDecoder().decode(data); // what was hashed, shown on the page
    if (!sameBytes(leaf, b.leafHash)) {
      return { ...fail("record", `the record's canonical bytes hash to leaf ${short(leaf)}, ` +
        `the bundle says ${short(b.leafHash)}: the record was altered`), hashed };
    }
    return { ...pass("record", `record ${b.record.id} hashes to leaf ${short(leaf)} ` +
      "(RFC 8785, RFC 9162 §2.1.1)"), hashed };
  }

  async function checkInclusion(b) {
    const cp = b.checkpoint;
    if (b.treeSize !== cp.treeSize) {
      return fail("inclusion", `the proof is for a tree of size ${b.treeSize}, the ` +
        `checkpoint has size ${cp.treeSize}`);
    }
    let root;
    try {
      root = await rootFromInclusionProof(b.leafHash, b.leafIndex, b.treeSize, b.proof);
    } catch (error) {
      if (!(error instanceof BundleError)) throw error;
      return fail("inclusion", `leaf ${b.leafIndex} in a tree of size ${b.treeSize}: ` +
        error.message);
    }
    if (!sameBytes(root, cp.root)) {
      return fail("inclusion", `leaf ${b.leafIndex} in a tree of size ${b.treeSize}: the ` +
        `proof leads to root ${short(root)}, the checkpoint's root is ${short(cp.root)}`);
    }
    return pass("inclusion", `leaf ${b.leafIndex} is in the tree of size ${cp.treeSize} ` +
      `with root ${short(cp.root)} (${b.proof.length} proof hashes, RFC 9162 §2.1.3.2)`);
  }

  async function checkConsistency(b) {
    const { fromTreeSize, fromRoot, proof } = b.consistency;
    const cp = b.checkpoint;
    try {
      await verifyConsistency(fromTreeSize, cp.treeSize, proof, fromRoot, cp.root);
    } catch (error) {
      if (!(error instanceof BundleError)) throw error;
      return fail("consistency", `from size ${fromTreeSize} (root ${short(fromRoot)}) to size ` +
        `${cp.treeSize}: ${error.message}`);
    }
    return pass("consistency", `the tree of size ${cp.treeSize} extends the tree of size ` +
      `${fromTreeSize} with root ${short(fromRoot)} (${proof.length} proof hashes, ` +
      "RFC 9162 §2.1.4.2)");
  }

  // One chain check: a node's refusal fails it; an unreachable endpoint aborts everything.
  async function guarded(name, run) {
    try {
      return await run();
    } catch (error) {
      if (error instanceof RpcError) return fail(name, error.message);
      throw error;
    }
  }

  // Runs the chain checks in order, handing each to `add` as it completes; throws
  // ChainUnavailable (after the checks already done) when the endpoint cannot be reached.
  async function chainChecks(b, trust, add) {
    const { rpcUrl, expectedChainId, expectedContract, confirmations } = trust;
    const an = b.anchor;
    const contract = an.contract.toLowerCase();
    const seq = an.seq;

    const chainId = await guarded("chain_id", async () => {
      if (expectedChainId !== null && an.chainId !== expectedChainId) {
        return fail("chain_id", `the bundle names chain ${an.chainId}, you expect chain ` +
          `${expectedChainId}`);
      }
      const actual = BigInt(await rpc(rpcUrl, "eth_chainId", []));
      if (actual !== BigInt(an.chainId)) {
        return fail("chain_id", `the endpoint serves chain ${actual}, the bundle names chain ` +
          `${an.chainId}`);
      }
      return pass("chain_id", `the endpoint serves chain ${actual}`);
    });
    if (add(chainId).status === "fail") {
      for (const name of CHAIN_CHECKS.slice(1)) {
        add(skip(name, "skipped: the endpoint does not serve the bundle's chain"));
      }
      return;
    }

    const code = await guarded("contract", async () => {
      if (expectedContract !== null && expectedContract.toLowerCase() !== contract) {
        return fail("contract", `the bundle names contract ${an.contract}, you expect ` +
          expectedContract);
      }
      const bytecode = await rpc(rpcUrl, "eth_getCode", [an.contract, "latest"]);
      if (typeof bytecode !== "string" || bytecode.length <= 2) {
        return fail("contract", `there is no contract code at ${an.contract} on this chain`);
      }
      return pass("contract", `contract ${an.contract} has ${(bytecode.length - 2) / 2} bytes ` +
        "of code");
    });
    add(code);

    if (code.status === "fail") {
      add(skip("checkpoint", "skipped: no contract to ask"));
    } else {
      add(await guarded("checkpoint", async () => {
        // AuditAnchor.checkpoint(uint256 seq) returns
        // (uint64 treeSize, bytes32 root, uint64 blockNumber, uint64 timestamp).
        const data = CHECKPOINT_SELECTOR + BigInt(seq).toString(16).padStart(64, "0");
        let out;
        try {
          out = await rpc(rpcUrl, "eth_call", [{ to: an.contract, data }, "latest"]);
        } catch (error) {
          if (!(error instanceof RpcError)) throw error;
          return fail("checkpoint", `contract ${an.contract} holds no checkpoint ${seq} ` +
            `(${error.message})`);
        }
        if (typeof out !== "string" || !/^0x[0-9a-fA-F]{256,}$/.test(out)) {
          return fail("checkpoint", `contract ${an.contract} answered checkpoint(${seq}) with ` +
            "something that is not four words");
        }
        const word = (i) => `0x${out.slice(2 + 64 * i, 66 + 64 * i)}`;
        const size = BigInt(word(0));
        const root = hexToBytes(word(1));
        const block = BigInt(word(2));
        const mismatches = [];
        if (size !== BigInt(b.checkpoint.treeSize)) {
          mismatches.push(`tree size ${size} (bundle: ${b.checkpoint.treeSize})`);
        }
        if (!sameBytes(root, b.checkpoint.root)) {
          mismatches.push(`root ${short(root)} (bundle: ${short(b.checkpoint.root)})`);
        }
        if (block !== BigInt(an.blockNumber)) {
          mismatches.push(`block ${block} (bundle: ${an.blockNumber})`);
        }
        if (mismatches.length) {
          return fail("checkpoint", `on chain, checkpoint ${seq} has ${mismatches.join("; ")}`);
        }
        return pass("checkpoint", `checkpoint ${seq} on chain is (size ${size}, root ` +
          `${short(root)}), anchored in block ${block}`);
      }));
    }

    add(await guarded("block", async () => {
      const number = an.blockNumber;
      const found = await rpc(rpcUrl, "eth_getBlockByNumber", [quantity(number), false]);
      const head = BigInt(await rpc(rpcUrl, "eth_blockNumber", []));
      if (found === null) {
        return fail("block", `block ${number} is beyond the chain's head ${head}`);
      }
      const canonical = hash(found.hash, "block hash");
      if (!sameBytes(canonical, an.blockHash)) {
        return fail("block", `block ${number} is ${short(canonical)} on the canonical chain, ` +
          `the bundle says ${short(an.blockHash)}: the anchor was reorganised away or the ` +
          "bundle is wrong");
      }
      const depth = head - BigInt(number) + 1n;
      if (depth < BigInt(confirmations)) {
        return fail("block", `block ${number} has ${depth} confirmation(s); ${confirmations} ` +
          "are required");
      }
      return pass("block", `block ${number} is canonical with ${depth} confirmation(s)`);
    }));

    add(await guarded("transaction", async () => {
      const tx = short(an.txHash);
      const receipt = await rpc(rpcUrl, "eth_getTransactionReceipt", [tx]);
      if (receipt === null) {
        return fail("transaction", `transaction ${tx} is not on the canonical chain`);
      }
      if (BigInt(receipt.status) !== 1n) return fail("transaction", `transaction ${tx} reverted`);
      const inBlock = BigInt(receipt.blockNumber);
      if (inBlock !== BigInt(an.blockNumber)
          || receipt.blockHash.toLowerCase() !== short(an.blockHash)) {
        return fail("transaction", `transaction ${tx} is in block ${inBlock} ` +
          `(${receipt.blockHash}), the bundle says block ${an.blockNumber} ` +
          `(${short(an.blockHash)})`);
      }
      const word = (n) => `0x${BigInt(n).toString(16).padStart(64, "0")}`;
      const expected = [CHECKPOINT_ANCHORED_TOPIC, word(seq), word(b.checkpoint.treeSize),
        short(b.checkpoint.root)];
      const event = `CheckpointAnchored(${seq}, ${b.checkpoint.treeSize}, ` +
        `${short(b.checkpoint.root)})`;
      const emitted = (receipt.logs || []).some((entry) =>
        String(entry.address).toLowerCase() === contract
        && entry.topics.length === expected.length
        && entry.topics.every((topic, i) => topic.toLowerCase() === expected[i]));
      if (!emitted) {
        return fail("transaction", `transaction ${tx} emitted no ${event} from ${an.contract}`);
      }
      return pass("transaction", `transaction ${tx} emitted ${event}`);
    }));
  }

  // Verify a parsed bundle against `trust`; `report(check)` is called as each check
  // completes. Returns {valid, chainReachable, checks, error}.
  async function verifyBundle(bundle, trust, report = () => {}) {
    const checks = [];
    const add = (check) => {
      checks.push(check);
      report(check);
      return check;
    };
    add(await checkRecord(bundle));
    add(await checkInclusion(bundle));
    if (bundle.erasure) add(await checkErasure(bundle));
    if (bundle.consistency) add(await checkConsistency(bundle));
    try {
      await chainChecks(bundle, trust, add);
    } catch (error) {
      if (!(error instanceof ChainUnavailable)) throw error;
      const done = new Set(checks.map((c) => c.name));
      for (const name of CHAIN_CHECKS.filter((n) => !done.has(n))) {
        add(skip(name, "not run: the chain endpoint could not be reached"));
      }
      return { valid: false, chainReachable: false, checks, error: error.message };
    }
    return {
      valid: checks.every((c) => c.status !== "fail"),
      chainReachable: true,
      checks,
      error: null,
    };
  }

  // The same for a bundle's JSON text; throws BundleError when it is not a bundle.
  const verifyBundleText = (text, trust, report) => verifyBundle(parseBundle(text), trust, report);

  // Exposed for tests that compare this implementation with chainaudit's Python one.
  globalThis.chainauditVerifier = Object.freeze({
    canonicalJson,
    rootFromInclusionProof: async (leafHex, index, size, proofHex) => bytesToHex(
      await rootFromInclusionProof(hexToBytes(leafHex), index, size, proofHex.map(hexToBytes)),
    ),
    leafHash: async (record) => bytesToHex(await hashLeaf(canonicalBytes(record))),
    verifyConsistency: (m, n, proofHex, oldHex, newHex) => verifyConsistency(m, n,
      proofHex.map(hexToBytes), hexToBytes(oldHex), hexToBytes(newHex)),
    verifyBundleText,
  });

  // ---------------------------------------------------------------------------------------
  // Page: DOM helpers
  // ---------------------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function el(tag, attributes = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes)) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "className") node.className = value;
      else if (name === "onClick") node.addEventListener("click", value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const hex0x = (value) => (value && !String(value).startsWith("0x") ? `0x${value}` : value);

  function hashCell(value, length = 10) {
    if (!value) return el("span", { className: "muted" }, "—");
    const full = hex0x(value);
    const text = full.length > 2 + 2 * length
      ? `${full.slice(0, 2 + length)}…${full.slice(-Math.ceil(length / 2))}` : full;
    return el("code", { className: "hash", title: full }, text);
  }

  const utcTime = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");

  function showMessage(node, text, kind = "info") {
    node.textContent = text;
    node.className = `message message-${kind}`;
    node.hidden = !text;
  }

  // ---------------------------------------------------------------------------------------
  // Page: the API client (this server, with the signed-in key)
  // ---------------------------------------------------------------------------------------

  const state = { key: null, me: null, config: null, verifying: false };

  async function api(path, { method = "GET", body, key = state.key } = {}) {
    const headers = { Accept: "application/json" };
    if (key) headers.Authorization = `Bearer ${key}`;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (error) {
      return { ok: false, status: 0, data: null, problem: `cannot reach the server: ${error}` };
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    const problem = response.ok ? null
      : (data && (data.detail || data.title)) || `HTTP ${response.status}`;
    if (response.status === 401 && key && key === state.key && state.me) signOut(problem);
    return { ok: response.ok, status: response.status, data, problem };
  }

  // ---------------------------------------------------------------------------------------
  // Page: configuration, session and views
  // ---------------------------------------------------------------------------------------

  async function loadConfig() {
    const answer = await api("/v1/config", { key: null });
    if (!answer.ok) return;
    const config = answer.data;
    state.config = config;
    $("config-version").textContent = config.version;
    $("config-chain").textContent = config.chain_id ?? "unknown";
    $("config-contract").textContent = config.anchor_contract ?? "not configured";
    $("config-rpc").textContent = config.rpc_url ?? "not published (enter your own)";
    // Prefill the verifier's trust settings once; the user may replace them.
    if (!$("rpc-url").value && config.rpc_url) $("rpc-url").value = config.rpc_url;
    if (!$("expected-chain").value && config.chain_id !== null) {
      $("expected-chain").value = String(config.chain_id);
    }
    if (!$("expected-contract").value && config.anchor_contract) {
      $("expected-contract").value = config.anchor_contract;
    }
  }

  function applyRole() {
    const role = state.me ? state.me.role : null;
    for (const node of document.querySelectorAll("[data-roles]")) {
      node.hidden = !role || !node.dataset.roles.split(" ").includes(role);
    }
    $("session").hidden = !state.me;
    if (state.me) {
      $("session-name").textContent = state.me.name;
      $("session-role").textContent = state.me.role;
      const actor = $("append-actor");
      actor.readOnly = role === "partner";
      if (role === "partner") actor.value = state.me.address || "";
    }
  }

  async function signIn(key) {
    const answer = await api("/v1/me", { key });
    if (!answer.ok) {
      return answer.status === 401 ? "This API key is unknown or revoked." : answer.problem;
    }
    state.key = key;
    state.me = answer.data;
    sessionStorage.setItem(KEY_STORAGE, key);
    applyRole();
    return null;
  }

  function signOut(reason) {
    state.key = null;
    state.me = null;
    sessionStorage.removeItem(KEY_STORAGE);
    applyRole();
    showView();
    if (reason) showMessage($("signin-error"), reason, "error");
  }

  const VIEWS = ["overview", "verify", "deals"];

  function currentView() {
    const name = location.hash.replace(/^#/, "");
    return VIEWS.includes(name) ? name : "overview";
  }

  function showView() {
    const view = currentView();
    const needsKey = view !== "verify" && !state.me;
    for (const name of [...VIEWS, "signin"]) {
      $(`view-${name}`).hidden = needsKey ? name !== "signin" : name !== view;
    }
    for (const link of document.querySelectorAll(".tabs a")) {
      if (link.dataset.view === view) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    document.title = `${$(`view-${needsKey ? "signin" : view}`).querySelector("h1")
      .textContent} · chainaudit`;
    if (needsKey) return;
    if (view === "overview") loadOverview();
    if (view === "deals") loadDeals();
  }

  // ---------------------------------------------------------------------------------------
  // Page: overview
  // ---------------------------------------------------------------------------------------

  const RECENT = 25;

  function anchorRow(a) {
    return el("tr", { "data-anchor-id": a.id },
      el("td", {}, String(a.id)),
      el("td", {}, el("span", { className: `status status-${a.status}` }, a.status)),
      el("td", { className: "num" }, String(a.tree_size)),
      el("td", {}, hashCell(a.root)),
      el("td", { className: "num" }, a.checkpoint_seq ?? "—"),
      el("td", { className: "num" }, a.block_number ?? "—"),
      el("td", {}, hashCell(a.tx_hash),
        a.last_error ? el("span", { className: "row-note" }, a.last_error) : null));
  }

  function recordRow(r) {
    return el("tr", { "data-record-id": r.record_id },
      el("td", { className: "num" }, String(r.leaf_index)),
      el("td", {}, el("span", { className: "record-id" }, r.record_id)),
      el("td", {}, el("span", { className: "kind" }, r.kind)),
      el("td", { className: "actor" }, r.actor),
      el("td", { className: "time" }, utcTime(r.timestamp_ms)),
      el("td", {}, hashCell(r.leaf_hash)),
      el("td", { className: "cell-action" }, el("button", {
        type: "button",
        className: "button-small",
        "aria-label": `Verify ${r.record_id} in this browser`,
        onClick: () => fetchAndVerify(r.record_id),
      }, "Verify")));
  }

  async function loadOverview() {
    const message = $("overview-message");
    const latest = await api("/v1/checkpoints/latest");
    if (!latest.ok) {
      showMessage(message, `Could not load the checkpoint: ${latest.problem}`, "error");
      return;
    }
    const cp = latest.data;
    $("stat-size").textContent = cp.tree_size.toLocaleString("en-US");
    $("stat-checkpoint-size").textContent = String(cp.tree_size);
    $("stat-checkpoint-root").textContent = hex0x(cp.root);
    $("stat-unanchored").textContent = cp.unanchored_records.toLocaleString("en-US");
    const anchored = cp.latest_anchor;
    $("stat-anchor").textContent = anchored ? anchored.status : "none yet";
    $("stat-anchor-note").textContent = anchored
      ? `size ${anchored.tree_size}, checkpoint ${anchored.checkpoint_seq}, block ` +
        `${anchored.block_number}` : "";

    const [anchors, records] = await Promise.all([
      api("/v1/anchors?limit=20"),
      api(`/v1/records?cursor=${Math.max(0, cp.tree_size - RECENT)}&limit=${RECENT}`),
    ]);
    const anchorBody = $("anchors-table").tBodies[0];
    anchorBody.replaceChildren(...(anchors.ok ? anchors.data.items.map(anchorRow) : []));
    $("anchors-empty").hidden = !anchors.ok || anchors.data.items.length > 0;
    const recordBody = $("records-table").tBodies[0];
    const items = records.ok ? records.data.items.slice().reverse() : [];
    recordBody.replaceChildren(...items.map(recordRow));
    $("records-empty").hidden = !records.ok || items.length > 0;
    const problems = [anchors, records].filter((a) => !a.ok).map((a) => a.problem);
    if (problems.length) showMessage(message, problems.join("; "), "error");
    else if (message.classList.contains("message-error")) showMessage(message, "");
  }

  async function anchorNow() {
    const button = $("anchor-now");
    const message = $("overview-message");
    button.disabled = true;
    try {
      const answer = await api("/v1/anchors", { method: "POST" });
      if (!answer.ok) {
        showMessage(message, `Anchoring refused: ${answer.problem}`, "error");
        return;
      }
      const target = answer.data.tree_size;
      showMessage(message, `Anchor requested for tree size ${target}; waiting for the chain…`);
      for (let i = 0; i < 30; i += 1) {
        await new Promise((resolve) => setTimeout(resolve, 1000));
        const latest = await api("/v1/checkpoints/latest");
        const done = latest.ok && latest.data.latest_anchor
          && latest.data.latest_anchor.tree_size >= target;
        if (done) {
          const a = latest.data.latest_anchor;
          showMessage(message, `Anchored: checkpoint ${a.checkpoint_seq} (size ${a.tree_size}) ` +
            `is ${a.status} in block ${a.block_number}.`, "success");
          await loadOverview();
          return;
        }
      }
      showMessage(message, "The anchor was requested but is not confirmed yet; refresh later.");
    } finally {
      button.disabled = false;
    }
  }

  async function appendRecord(event) {
    event.preventDefault();
    const message = $("append-message");
    let payload;
    try {
      payload = JSON.parse($("append-payload").value);
    } catch (error) {
      showMessage(message, `The payload is not JSON: ${error.message}`, "error");
      return;
    }
    const body = {
      id: $("append-id").value.trim(),
      kind: $("append-kind").value,
      timestamp: new Date().toISOString(),
      actor: $("append-actor").value.trim(),
      payload,
    };
    const answer = await api("/v1/records", { method: "POST", body });
    if (!answer.ok) {
      showMessage(message, answer.problem, "error");
      return;
    }
    const result = answer.data.results[0];
    showMessage(message, result.duplicate ? `${result.record_id} was already at leaf ` +
      `${result.leaf_index}.` : `Appended ${result.record_id} at leaf ${result.leaf_index}.`,
    "success");
    await loadOverview();
  }

  // ---------------------------------------------------------------------------------------
  // Page: verify
  // ---------------------------------------------------------------------------------------

  function trustSettings() {
    const rpcUrl = $("rpc-url").value.trim();
    const chain = $("expected-chain").value.trim();
    const contract = $("expected-contract").value.trim();
    const confirmations = Number($("confirmations").value || "1");
    if (!/^https?:\/\/\S+$/.test(rpcUrl)) {
      throw new BundleError("the chain endpoint must be an http(s) URL");
    }
    if (chain && !/^[1-9]\d{0,15}$/.test(chain)) {
      throw new BundleError("the expected chain id must be a positive integer");
    }
    if (contract && !ADDRESS_RE.test(contract)) {
      throw new BundleError("the expected contract must be an address (0x and 40 hex digits)");
    }
    if (!Number.isSafeInteger(confirmations) || confirmations < 1) {
      throw new BundleError("confirmations must be a whole number of at least 1");
    }
    return {
      rpcUrl,
      expectedChainId: chain ? Number(chain) : null,
      expectedContract: contract || null,
      confirmations,
    };
  }

  function checkItem(check) {
    const label = { pass: "pass", fail: "fail", skip: "skip", wait: "…" }[check.status];
    return el("li", { className: `check check-${check.status}`, "data-check": check.name,
      "data-status": check.status },
    el("span", { className: "check-badge", "aria-hidden": "true" }, label),
    el("span", { className: "check-name" }, check.name,
      el("span", { className: "sr-only" }, `: ${check.status}`)),
    el("span", { className: "check-detail" }, check.detail));
  }

  function setVerdict(kind, title, detail) {
    const box = $("verdict");
    box.className = `verdict verdict-${kind}`;
    box.dataset.verdict = kind;
    $("verdict-title").textContent = title;
    $("verdict-detail").textContent = detail;
    box.hidden = false;
  }

  async function runVerify() {
    if (state.verifying) return;
    const list = $("checks");
    const input = $("bundle-input");
    const text = input.value.trim();
    input.scrollTop = 0; // show the record's start next to the verdict
    list.replaceChildren();
    $("hashed").hidden = true;
    if (!text) {
      setVerdict("error", "Nothing to verify", "Paste or drop a proof bundle first.");
      return;
    }
    let trust;
    try {
      trust = trustSettings();
    } catch (error) {
      setVerdict("error", "Check the trust settings", error.message);
      return;
    }
    state.verifying = true;
    $("verify-button").disabled = true;
    $("verdict").hidden = true;
    const items = new Map();
    const report = (check) => {
      const item = checkItem(check);
      items.get(check.name).replaceWith(item);
      items.set(check.name, item);
      if (check.hashed !== undefined) {
        // The record exactly as this browser hashed it: RFC 8785 bytes, not the pasted text.
        $("hashed-record").textContent = check.hashed;
        $("hashed").hidden = false;
      }
    };
    try {
      const bundle = parseBundle(text);
      for (const name of checkNames(bundle)) {
        items.set(name, checkItem({ name, status: "wait", detail: "waiting" }));
      }
      list.replaceChildren(...items.values());
      const result = await verifyBundle(bundle, trust, report);
      const failed = result.checks.filter((c) => c.status === "fail").map((c) => c.name);
      if (failed.length) {
        setVerdict("invalid", `Not valid: ${failed.join(", ")} failed`,
          "The bundle does not prove what it claims. Each failing check says why.");
      } else if (!result.chainReachable) {
        setVerdict("error", "Not verified: the chain could not be read", result.error);
      } else {
        const skipped = result.checks.filter((c) => c.status === "skip").map((c) => c.name);
        setVerdict("valid", "Valid: every check passed", skipped.length
          ? `Skipped: ${skipped.join(", ")}.`
          : "The record is in the log at a checkpoint anchored on chain.");
      }
    } catch (error) {
      list.replaceChildren();
      if (error instanceof BundleError) {
        setVerdict("error", "This is not a proof bundle", error.message);
      } else {
        setVerdict("error", "Verification could not run", String(error.message || error));
      }
    } finally {
      state.verifying = false;
      $("verify-button").disabled = false;
    }
  }

  function clearVerify() {
    $("bundle-input").value = "";
    $("checks").replaceChildren();
    $("verdict").hidden = true;
    $("hashed").hidden = true;
  }

  async function loadFile(file) {
    if (!file) return;
    $("bundle-input").value = await file.text();
    await runVerify();
  }

  // Fetch a record's bundle from this server, then verify it here (lights up when the
  // server offers /v1/records/{id}/bundle).
  async function fetchAndVerify(recordId) {
    const answer = await api(`/v1/records/${encodeURIComponent(recordId)}/bundle`);
    location.hash = "#verify";
    clearVerify();
    if (!answer.ok) {
      setVerdict("error", `No bundle for ${recordId}`, answer.status === 404
        ? `${answer.problem}. The record may not be anchored yet, or this server does not ` +
          "offer bundles."
        : answer.problem);
      return;
    }
    const data = answer.data;
    const bundle = data && !("version" in data) && isObject(data.bundle) ? data.bundle : data;
    $("bundle-input").value = JSON.stringify(bundle, null, 2);
    await runVerify();
  }

  // ---------------------------------------------------------------------------------------
  // Page: deals (rendered when the server offers /v1/deals)
  // ---------------------------------------------------------------------------------------

  // The deal fields worth a column, when the server's deals carry them (the rest stay out).
  const DEAL_COLUMNS = ["deal_id", "id", "state", "status", "buyer", "supplier", "financier",
    "amount", "total", "funded", "released", "refunded", "held", "token"];

  function dealId(deal) {
    return deal.deal_id ?? deal.id;
  }

  const AMOUNT_COLUMNS = ["amount", "total", "funded", "released", "refunded", "held"];

  // Amounts are integers in the token's minor units; shown in units when decimals are known.
  function dealCell(value, column, deal) {
    if (value === null || value === undefined) return "—";
    if (AMOUNT_COLUMNS.includes(column) && Number.isInteger(deal.token_decimals) &&
        (typeof value === "number" || typeof value === "string")) {
      const units = Number(value) / 10 ** deal.token_decimals;
      return units.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
    }
    if (Array.isArray(value)) return String(value.length);
    if (typeof value === "string" && /^0x[0-9a-fA-F]{40,64}$/.test(value)) {
      return hashCell(value, 8);
    }
    return typeof value === "object" ? JSON.stringify(value) : String(value);
  }

  // Trace timestamps may be RFC 3339 strings or milliseconds; show both as UTC.
  function traceTime(value) {
    if (typeof value === "number") return utcTime(value);
    const ms = typeof value === "string" ? Date.parse(value) : NaN;
    return Number.isNaN(ms) ? String(value ?? "") : utcTime(ms);
  }

  async function loadDeals() {
    const message = $("deals-message");
    const answer = await api("/v1/deals");
    $("deals-wrap").hidden = true;
    if (answer.status === 404) {
      showMessage(message, "Deals are not available on this server.", "info");
      return;
    }
    if (!answer.ok) {
      showMessage(message, `Could not load deals: ${answer.problem}`, "error");
      return;
    }
    const data = answer.data;
    const deals = Array.isArray(data) ? data : (data && (data.items || data.deals)) || [];
    if (!deals.length) {
      showMessage(message, "No deals yet.", "info");
      return;
    }
    showMessage(message, "");
    const columns = DEAL_COLUMNS.filter((c) => deals.some((d) => d && c in d)).slice(0, 10);
    const head = $("deals-table").tHead.rows[0];
    head.replaceChildren(...columns.map((c) => el("th", { scope: "col" }, c.replace("_", " "))),
      el("th", { scope: "col" }, el("span", { className: "sr-only" }, "Actions")));
    $("deals-table").tBodies[0].replaceChildren(...deals.map((deal) => el("tr", {},
      columns.map((c) => el("td", {}, dealCell(deal[c], c, deal))),
      el("td", { className: "cell-action" }, el("button", {
        type: "button",
        className: "button-small",
        onClick: () => loadTrace(String(dealId(deal))),
      }, "Timeline")))));
    $("deals-wrap").hidden = false;
  }

  function traceEntry(entry) {
    const status = entry.proof_status || "pending";
    return el("li", { className: "timeline-entry", "data-record-id": entry.record_id },
      el("div", { className: "timeline-time" }, traceTime(entry.timestamp)),
      el("div", { className: "timeline-body" },
        el("p", { className: "timeline-title" },
          el("strong", {}, entry.event || entry.kind || "record"),
          " ",
          el("span", { className: `status status-${status}` }, status)),
        el("p", { className: "timeline-meta" },
          `${entry.kind || ""} by ${entry.actor || "—"} · record ${entry.record_id} · leaf ` +
          `${entry.leaf_index ?? "—"}`),
        el("p", { className: "timeline-meta" },
          entry.tx_hash ? ["escrow tx ", hashCell(entry.tx_hash)] : null,
          entry.anchor_tx ? [" · anchor tx ", hashCell(entry.anchor_tx)] : null),
        status !== "pending" ? el("button", {
          type: "button",
          className: "button-small",
          onClick: () => fetchAndVerify(entry.record_id),
        }, "Verify in browser") : null));
  }

  async function loadTrace(id) {
    if (!id) return;
    $("trace-id").value = id;
    $("trace").hidden = false;
    $("trace-title").textContent = `Timeline of deal ${id}`;
    const message = $("trace-message");
    const timeline = $("timeline");
    timeline.replaceChildren();
    const answer = await api(`/v1/deals/${encodeURIComponent(id)}/trace`);
    if (answer.status === 404) {
      showMessage(message, `Timeline not available (${answer.problem}).`, "info");
      return;
    }
    if (!answer.ok) {
      showMessage(message, answer.problem, "error");
      return;
    }
    const entries = (answer.data && answer.data.entries) || [];
    showMessage(message, entries.length ? "" : "No entries yet.", "info");
    timeline.replaceChildren(...entries.map(traceEntry));
  }

  // ---------------------------------------------------------------------------------------
  // Wiring
  // ---------------------------------------------------------------------------------------

  function wire() {
    $("signin-form").addEventListener("submit", async (event) => {
      event.preventDefault();
      const key = $("api-key").value.trim();
      const error = $("signin-error");
      if (!key) {
        showMessage(error, "Enter an API key.", "error");
        return;
      }
      $("sign-in").disabled = true;
      const problem = await signIn(key);
      $("sign-in").disabled = false;
      if (problem) {
        showMessage(error, problem, "error");
        $("api-key").select();
        return;
      }
      showMessage(error, "");
      $("api-key").value = "";
      showView();
    });
    $("sign-out").addEventListener("click", () => signOut(null));
    $("refresh").addEventListener("click", loadOverview);
    $("anchor-now").addEventListener("click", anchorNow);
    $("append-form").addEventListener("submit", appendRecord);
    $("verify-button").addEventListener("click", runVerify);
    $("verify-clear").addEventListener("click", clearVerify);
    $("bundle-file").addEventListener("change", (e) => loadFile(e.target.files[0]));
    const zone = $("dropzone");
    zone.addEventListener("dragover", (e) => {
      e.preventDefault();
      zone.classList.add("dropzone-over");
    });
    zone.addEventListener("dragleave", () => zone.classList.remove("dropzone-over"));
    zone.addEventListener("drop", (e) => {
      e.preventDefault();
      zone.classList.remove("dropzone-over");
      loadFile(e.dataTransfer.files[0]);
    });
    $("deals-refresh").addEventListener("click", loadDeals);
    $("trace-form").addEventListener("submit", (e) => {
      e.preventDefault();
      loadTrace($("trace-id").value.trim());
    });
    window.addEventListener("hashchange", showView);
  }

  async function start() {
    wire();
    await loadConfig();
    const saved = sessionStorage.getItem(KEY_STORAGE);
    if (saved) {
      const problem = await signIn(saved);
      if (problem) signOut(`Signed out: ${problem}`);
    }
    applyRole();
    showView();
    document.body.dataset.ready = "true";
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
