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
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  const hex0x = (value) => (value && !String(value).startsWith("0x") ? `0x${value}` : value);

  // A long value shortened in the middle ("escrow:31337:cb22f8…:0:3"); null when it fits.
  function middle(text, keep) {
    const value = String(text);
    if (value.length <= keep + 1) return null;
    const head = Math.ceil(keep * 0.6);
    return `${value.slice(0, head)}…${value.slice(value.length - (keep - head))}`;
  }

  // A value shown shortened in the middle with the full value as its title (hover), for
  // screen readers, and on copy (selecting the short text copies the whole value).
  // Long hex runs (hashes, addresses inside ids) shortened first, so the parts that tell
  // ids apart (prefix, log index, suffix) stay visible.
  const compact = (text) => String(text).replace(/[0-9a-fA-F]{20,}/g,
    (run) => `${run.slice(0, 6)}…${run.slice(-4)}`);

  function shortCell(value, keep = 18, className = "short") {
    if (value === null || value === undefined || value === "") {
      return el("span", { className: "muted" }, "—");
    }
    const full = String(value);
    const compacted = /^0x[0-9a-fA-F]+$/.test(full) ? full : compact(full);
    const shown = middle(compacted, keep) ?? (compacted !== full ? compacted : null);
    if (shown === null) return el("code", { className, "data-full": full }, full);
    return el("code", { className, title: full, "data-full": full },
      el("span", { "aria-hidden": "true" }, shown),
      el("span", { className: "sr-only" }, full));
  }

  function hashCell(value, length = 10) {
    if (!value) return el("span", { className: "muted" }, "—");
    const full = hex0x(value);
    return shortCell(full, 2 + length + Math.ceil(length / 2), "hash");
  }

  const utcTime = (ms) => new Date(ms).toISOString().replace("T", " ").replace(/\.\d+Z$/, "");

  function showMessage(node, text, kind = "info") {
    node.textContent = text;
    node.className = `message message-${kind}`;
    node.hidden = !text;
  }

  // An amount in a token's minor units as {minor: BigInt, approx}, or null when it is not one.
  // Strings of digits are read exactly; a JSON number is exact only up to 2^53 (above it, or
  // when it is not an integer, the nearest integer is taken and marked approximate); never
  // throws (String(7.5e22) is "7.5e+22", which BigInt refuses).
  function minorAmount(value) {
    if (typeof value === "bigint") return { minor: value, approx: false };
    if (typeof value === "string" && /^-?[0-9]+$/.test(value.trim())) {
      return { minor: BigInt(value.trim()), approx: false };
    }
    const number = typeof value === "number" ? value
      : typeof value === "string" && value.trim() !== "" ? Number(value) : NaN;
    if (!Number.isFinite(number)) return null;
    if (Number.isSafeInteger(number)) return { minor: BigInt(number), approx: false };
    // The number's shortest decimal form (7.5e22 is 75000000000000000000000, not the float's
    // exact 75000000000000002097152), as an integer.
    const digits = Math.round(number).toLocaleString("en-US",
      { useGrouping: false, maximumFractionDigits: 0 });
    return { minor: /^-?[0-9]+$/.test(digits) ? BigInt(digits) : BigInt(Math.round(number)),
      approx: true };
  }

  // Amounts are integers in the token's minor units; shown in whole units with the token's own
  // precision: every significant decimal, trailing zeros trimmed but at least two kept (a
  // 6-decimal 1234567 is "1.234567", 1500000 is "1.50"; a 0-decimal token shows "12").
  // An approximate figure (a JSON number past 2^53) is prefixed "≈" and cut to two decimals:
  // its further digits are the float's, not the chain's.
  function units(value, decimals) {
    if (value === null || value === undefined) return "—";
    const amount = minorAmount(value);
    if (!amount || !Number.isInteger(decimals) || decimals < 0) return String(value);
    const negative = amount.minor < 0n;
    const abs = negative ? -amount.minor : amount.minor;
    const scale = 10n ** BigInt(decimals);
    const whole = (abs / scale).toLocaleString("en-US");
    let fraction = decimals ? String(abs % scale).padStart(decimals, "0") : "";
    const least = Math.min(2, decimals);
    if (amount.approx) fraction = fraction.slice(0, least);
    fraction = fraction.replace(/0+$/, "").padEnd(least, "0");
    return `${amount.approx ? "≈" : ""}${negative ? "-" : ""}${whole}` +
      `${fraction ? `.${fraction}` : ""}`;
  }

  // The larger of two amounts (as units() reads them), keeping exact figures exact.
  function maxAmount(a, b) {
    const x = minorAmount(a);
    const y = minorAmount(b);
    if (!x) return b;
    if (!y) return a;
    return y.minor > x.minor ? b : a;
  }

  globalThis.chainauditPage = Object.freeze({ units });

  // Selecting a shortened value and copying it copies the full value.
  document.addEventListener("copy", (event) => {
    const selection = document.getSelection();
    if (!selection || selection.rangeCount === 0) return;
    const node = selection.anchorNode && selection.anchorNode.parentElement;
    const short = node && node.closest("[data-full]");
    if (!short || !short.contains(selection.focusNode)) return;
    event.clipboardData.setData("text/plain", short.dataset.full);
    event.preventDefault();
  });

  // ---------------------------------------------------------------------------------------
  // Page: the API client (this server, with the signed-in key)
  // ---------------------------------------------------------------------------------------

  const state = {
    key: null, me: null, config: null, verifying: false,
    anchored: { anchoredSize: 0, finalSize: 0 },
    list: { cursor: 0, next: null, filters: {} },
    shown: null, // the record open in the Records view
    parties: new Map(), // deal id -> its /parties answer
  };

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
      : (data && (data.detail || data.title || data.error)) || `HTTP ${response.status}`;
    if (response.status === 401 && key && key === state.key && state.me) signOut(problem);
    return { ok: response.ok, status: response.status, data, problem,
      link: response.headers.get("Link") };
  }

  // The deals the key sees, newest first, following the API's `Link: <…>; rel="next"` pages
  // (200 deals each) up to 20 pages, so that older deals (and their holds) are shown too.
  // The answer has api()'s shape, `data` holding every page's deals.
  async function allDeals() {
    let answer = await api("/v1/deals?limit=200");
    if (!answer.ok || !Array.isArray(answer.data)) return answer;
    const deals = [...answer.data];
    for (let pages = 1; pages < 20; pages += 1) {
      const next = /<([^>]+)>\s*;\s*rel="next"/.exec(answer.link || "");
      if (!next || !next[1].startsWith("/v1/deals?")) break;
      answer = await api(next[1]);
      if (!answer.ok || !Array.isArray(answer.data)) return answer;
      deals.push(...answer.data);
    }
    return { ...answer, data: deals };
  }

  // A load overtaken by a later one of the same view, or by another sign-in, renders
  // nothing: its answers may be older than what is on screen, or another key's.
  const loadCounters = {};
  function freshness(name) {
    const n = (loadCounters[name] = (loadCounters[name] || 0) + 1);
    const key = state.key;
    return () => n === loadCounters[name] && key === state.key;
  }

  const role = () => (state.me ? state.me.role : null);
  const isOfficer = () => ["admin", "operator"].includes(role());
  const seesAll = () => Boolean(state.me) && role() !== "partner";

  // ---------------------------------------------------------------------------------------
  // Page: configuration, trust pins, session and views
  // ---------------------------------------------------------------------------------------

  const PIN_STORAGE = "chainaudit.pinned";

  function pinned() {
    try {
      const value = JSON.parse(localStorage.getItem(PIN_STORAGE) || "null");
      return isObject(value) ? value : null;
    } catch {
      return null;
    }
  }

  // The chain and contract the page verifies against, and whether the user pinned them.
  function showTrust() {
    const pin = pinned();
    const config = state.config || {};
    const chain = pin ? pin.chain_id : config.chain_id;
    const contract = pin ? pin.contract : config.anchor_contract;
    for (const node of document.querySelectorAll("[data-config=chain]")) {
      node.textContent = chain ?? "unknown";
    }
    for (const node of document.querySelectorAll("[data-config=contract]")) {
      node.textContent = contract ?? "not configured";
    }
    for (const node of document.querySelectorAll("[data-pin-warning]")) node.hidden = !!pin;
    $("pin-ok").hidden = !pin;
    $("unpin-trust").hidden = !pin;
    if (pin) {
      const differs = config.anchor_contract && pin.contract
        && config.anchor_contract.toLowerCase() !== pin.contract.toLowerCase();
      $("pin-ok").textContent = differs
        ? `Pinned in this browser: chain ${pin.chain_id}, ${pin.contract}. Warning: this ` +
          `server now names another contract (${config.anchor_contract}).`
        : `Pinned in this browser: chain ${pin.chain_id}, ${pin.contract}.`;
      $("pin-ok").className = differs ? "pin-warning" : "pin-ok";
    }
  }

  function pinTrust() {
    const chain = $("expected-chain").value.trim();
    const contract = $("expected-contract").value.trim();
    if (!/^[1-9]\d{0,15}$/.test(chain) || !ADDRESS_RE.test(contract)) {
      setVerdict("error", "Nothing pinned", "Enter the chain id and the AuditAnchor address " +
        "you got from a source you trust, then pin them.");
      return;
    }
    localStorage.setItem(PIN_STORAGE, JSON.stringify({ chain_id: Number(chain), contract }));
    showTrust();
  }

  function unpinTrust() {
    localStorage.removeItem(PIN_STORAGE);
    showTrust();
  }

  async function loadConfig() {
    const answer = await api("/v1/config", { key: null });
    if (!answer.ok) return;
    const config = answer.data;
    state.config = config;
    $("config-version").textContent = config.version;
    $("config-chain").textContent = config.chain_id ?? "unknown";
    $("config-contract").textContent = config.anchor_contract ?? "not configured";
    $("config-rpc").textContent = config.rpc_url ?? "not published (enter your own)";
    // Prefill the verifier's trust settings once (pinned values first); the user may
    // replace them.
    const pin = pinned();
    if (!$("rpc-url").value && config.rpc_url) $("rpc-url").value = config.rpc_url;
    const chain = pin ? pin.chain_id : config.chain_id;
    const contract = pin ? pin.contract : config.anchor_contract;
    if (!$("expected-chain").value && chain !== null && chain !== undefined) {
      $("expected-chain").value = String(chain);
    }
    if (!$("expected-contract").value && contract) $("expected-contract").value = contract;
    showTrust();
  }

  function applyRole() {
    const current = role();
    for (const node of document.querySelectorAll("[data-roles]")) {
      node.hidden = !current || !node.dataset.roles.split(" ").includes(current);
    }
    $("session").hidden = !state.me;
    if (state.me) {
      $("session-name").textContent = state.me.name;
      $("session-role").textContent = state.me.role;
      const actor = $("append-actor");
      actor.readOnly = current === "partner";
      if (current === "partner") actor.value = state.me.address || "";
    }
  }

  async function signIn(key) {
    const answer = await api("/v1/me", { key });
    if (!answer.ok) {
      return answer.status === 401 ? "This API key is unknown or revoked." : answer.problem;
    }
    state.key = key;
    state.me = answer.data;
    state.parties.clear();
    sessionStorage.setItem(KEY_STORAGE, key);
    applyRole();
    return null;
  }

  function signOut(reason) {
    state.key = null;
    state.me = null;
    state.parties.clear();
    sessionStorage.removeItem(KEY_STORAGE);
    applyRole();
    showView();
    if (reason) showMessage($("signin-error"), reason, "error");
  }

  const VIEWS = ["overview", "records", "deals", "compliance", "verify"];

  // "#records/<id>" opens a record, "#deals/<id>" a deal's timeline.
  function route() {
    const [name, ...rest] = location.hash.replace(/^#/, "").split("/");
    const view = VIEWS.includes(name) ? name : "overview";
    let arg = null;
    if (rest.length) {
      try {
        arg = decodeURIComponent(rest.join("/"));
      } catch {
        arg = null;
      }
    }
    return { view, arg };
  }

  function showView() {
    const { view, arg } = route();
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
    // data-loaded says when the view's data is in (the latest load only).
    const loaders = {
      overview: () => loadOverview(),
      records: () => loadRecords(arg),
      deals: () => loadDeals(arg),
      compliance: () => loadCompliance(),
    };
    const section = $(`view-${view}`);
    const load = (state.loads = (state.loads || 0) + 1);
    section.dataset.loaded = "false";
    Promise.resolve(loaders[view] ? loaders[view]() : null).finally(() => {
      if (state.loads === load) section.dataset.loaded = "true";
    });
  }

  // ---------------------------------------------------------------------------------------
  // Page: proof status (pending / anchored / final) from the anchors
  // ---------------------------------------------------------------------------------------

  async function loadAnchorState() {
    const answer = await api("/v1/anchors?limit=1000");
    if (!answer.ok) return answer;
    const items = answer.data.items || [];
    const on = (statuses) => Math.max(0, ...items.filter((a) => statuses.includes(a.status))
      .map((a) => a.tree_size));
    state.anchored = { anchoredSize: on(["confirmed", "final"]), finalSize: on(["final"]) };
    return answer;
  }

  function proofStatus(leafIndex) {
    if (leafIndex < state.anchored.finalSize) return "final";
    if (leafIndex < state.anchored.anchoredSize) return "anchored";
    return "pending";
  }

  const statusBadge = (status) => el("span", { className: `status status-${status}` }, status);

  // ---------------------------------------------------------------------------------------
  // Page: overview
  // ---------------------------------------------------------------------------------------

  const RECENT = 25;

  function anchorRow(a) {
    return el("tr", { "data-anchor-id": a.id },
      el("td", { "data-label": "#" }, String(a.id)),
      el("td", { "data-label": "Status" }, statusBadge(a.status)),
      el("td", { className: "num", "data-label": "Tree size" }, String(a.tree_size)),
      el("td", { "data-label": "Root" }, hashCell(a.root)),
      el("td", { className: "num", "data-label": "Checkpoint" }, a.checkpoint_seq ?? "—"),
      el("td", { className: "num", "data-label": "Block" }, a.block_number ?? "—"),
      el("td", { "data-label": "Transaction" }, hashCell(a.tx_hash),
        a.last_error ? el("span", { className: "row-note" }, a.last_error) : null));
  }

  const recordLink = (id) => el("a", { className: "record-link",
    href: `#records/${encodeURIComponent(id)}` }, shortCell(id, 40, "record-id"));

  // The cells every record row shows: leaf, record, kind, actor, time and proof status.
  const recordCells = (r) => [
    el("td", { className: "num", "data-label": "Leaf" }, String(r.leaf_index)),
    el("td", { "data-label": "Record" }, recordLink(r.record_id)),
    el("td", { "data-label": "Kind" }, el("span", { className: "kind" }, r.kind)),
    el("td", { className: "actor", "data-label": "Actor" }, shortCell(r.actor, 16)),
    el("td", { className: "time", "data-label": "Time (UTC)" }, utcTime(r.timestamp_ms)),
    el("td", { "data-label": "Proof" }, statusBadge(proofStatus(r.leaf_index))),
  ];

  function recordRow(r) {
    return el("tr", { "data-record-id": r.record_id }, ...recordCells(r),
      el("td", { className: "cell-action" }, el("button", {
        type: "button",
        className: "button-small",
        "aria-label": `Verify ${r.record_id} in this browser`,
        onClick: () => fetchAndVerify(r.record_id),
      }, "Verify")));
  }

  async function loadOverview() {
    state.parties.clear(); // money moves: each load (and Refresh) reads the parties afresh
    const message = $("overview-message");
    const current = freshness("overview");
    const latest = await api("/v1/checkpoints/latest");
    if (!current()) return;
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

    const partner = role() === "partner";
    // A partner's list holds only what it may see, from its first record on; everyone
    // else sees the last records of the whole log.
    const recordsPath = partner ? `/v1/records?limit=${RECENT}`
      : `/v1/records?cursor=${Math.max(0, cp.tree_size - RECENT)}&limit=${RECENT}`;
    const [anchors, records] = await Promise.all([loadAnchorState(), api(recordsPath)]);
    if (!current()) return;
    $("records-title").textContent = partner ? "Your records" : "Recent records";
    const anchorBody = $("anchors-table").tBodies[0];
    const anchorItems = anchors.ok ? anchors.data.items.slice(0, 20) : [];
    anchorBody.replaceChildren(...anchorItems.map(anchorRow));
    $("anchors-empty").hidden = partner || !anchors.ok || anchorItems.length > 0;
    const recordBody = $("records-table").tBodies[0];
    const items = records.ok ? records.data.items.slice() : [];
    if (!partner) items.reverse();
    recordBody.replaceChildren(...items.map(recordRow));
    $("records-empty").hidden = !records.ok || items.length > 0;
    $("records-empty").textContent = partner && records.ok && records.data.next_cursor !== null
      ? "None of your records in the first pages; search them in Records." : "No records yet.";
    const problems = [anchors, records].filter((a) => !a.ok).map((a) => a.problem);
    if (problems.length) showMessage(message, problems.join("; "), "error");
    else if (message.classList.contains("message-error")) showMessage(message, "");
    $("my-world").hidden = !partner;
    if (partner) await loadMyDeals();
  }

  // The parties of a deal with their names and money (cached for one view's load: each
  // load clears the cache, so a Refresh shows money that moved since).
  async function dealParties(id) {
    const key = String(id);
    if (!state.parties.has(key)) {
      const signedIn = state.key;
      const answer = await api(`/v1/deals/${encodeURIComponent(key)}/parties`);
      if (!answer.ok) return null;
      if (signedIn !== state.key) return null; // another key signed in meanwhile
      state.parties.set(key, answer.data);
    }
    return state.parties.get(key);
  }

  function milestoneSummary(deal) {
    return (deal.milestones || []).map((m) => `${m.index + 1}: ${m.status}` +
      `${m.hold && m.hold.active ? " (on hold)" : ""}`).join(" · ");
  }

  async function loadMyDeals() {
    const message = $("my-deals-message");
    const current = freshness("my-deals");
    const answer = await allDeals();
    if (!current()) return;
    const body = $("my-deals-table").tBodies[0];
    if (!answer.ok) {
      body.replaceChildren();
      showMessage(message, answer.status === 404 ? "Deals are not available on this server."
        : `Could not load your deals: ${answer.problem}`, "info");
      return;
    }
    const deals = Array.isArray(answer.data) ? answer.data : [];
    if (!deals.length) {
      body.replaceChildren();
      showMessage(message, "You are not a party of any deal yet.", "info");
      return;
    }
    showMessage(message, "");
    const mine = (state.me.address || "").toLowerCase();
    const rows = [];
    for (const deal of deals) {
      const info = await dealParties(deal.deal_id);
      const own = info ? info.parties.filter((p) => p.address.toLowerCase() === mine) : [];
      const figure = (field) => own.reduce((n, p) => (p[field] === null ? n
        : maxAmount(n, p[field])), "0");
      const d = info ? info.token_decimals : deal.token_decimals;
      const roles = [...new Set(own.map((p) => p.role))];
      // A buyer's money is the whole deal's; a payee's, its milestones'.
      const buyer = roles.includes("buyer");
      const onHold = (deal.milestones || []).filter((m) => m.hold && m.hold.active)
        .reduce((n, m) => n + (minorAmount(m.held) || { minor: 0n }).minor, 0n);
      const inEscrow = buyer ? deal.held : figure("in_escrow");
      const held = buyer ? onHold : figure("on_hold");
      const released = buyer ? deal.released : figure("released");
      rows.push(el("tr", { "data-deal-id": deal.deal_id },
        el("td", { "data-label": "Deal" }, el("a", { href: `#deals/${deal.deal_id}` },
          `Deal ${deal.deal_id}`)),
        el("td", { "data-label": "Your role" }, roles.join(", ") || "—"),
        el("td", { "data-label": "Milestones" }, milestoneSummary(deal)),
        el("td", { className: "num", "data-label": "To fund" }, units(figure("to_fund"), d)),
        el("td", { className: "num", "data-label": "In escrow" }, units(inEscrow, d)),
        el("td", { className: "num", "data-label": "On hold" }, units(held, d)),
        el("td", { className: "num", "data-label": "Released" }, units(released, d)),
        el("td", { className: "num", "data-label": "To withdraw" },
          units(figure("credit"), d)),
        el("td", { className: "cell-action" }, el("a", { className: "button-small",
          href: `#deals/${deal.deal_id}` }, "Timeline"))));
    }
    if (current()) body.replaceChildren(...rows);
  }

  async function anchorNow() {
    const button = $("anchor-now");
    const message = $("overview-message");
    button.disabled = true;
    try {
      const answer = await api("/v1/anchors", { method: "POST" });
      if (!answer.ok) {
        showMessage(message, `Anchoring refused: ${answer.problem}`, "error");
        return false;
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
          if (route().view === "overview") await loadOverview();
          return true;
        }
      }
      showMessage(message, "The anchor was requested but is not confirmed yet; refresh later.");
      return false;
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
    for (const extra of $("verdict").querySelectorAll(".verdict-action")) extra.remove();
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
  async function bundleOf(recordId) {
    const answer = await api(`/v1/records/${encodeURIComponent(recordId)}/bundle`);
    if (!answer.ok) return answer;
    const data = answer.data;
    const bundle = data && !("version" in data) && isObject(data.bundle) ? data.bundle : data;
    return { ...answer, data: bundle };
  }

  // Why there is no bundle, in the words of the page (not the CLI's).
  function noBundleDetail(answer) {
    if (answer.status === 409) {
      return "The record is not anchored yet: no checkpoint on chain covers it. " +
        (isOfficer() ? "Use “Anchor now” below (or on the Overview), then verify again."
          : "The next anchor will cover it; try again after it (the proof badge turns " +
            "“anchored”).");
    }
    if (answer.status === 404) {
      return `${answer.problem}. The record may not be anchored yet, or this server does ` +
        "not offer bundles.";
    }
    return answer.problem;
  }

  // Fetch a record's bundle from this server, then verify it here.
  async function fetchAndVerify(recordId) {
    const answer = await bundleOf(recordId);
    location.hash = "#verify";
    clearVerify();
    if (!answer.ok) {
      setVerdict("error", `No bundle for ${recordId}`, noBundleDetail(answer));
      if (answer.status === 409 && isOfficer()) {
        $("verdict").append(el("button", {
          type: "button",
          className: "button-primary verdict-action",
          onClick: async (event) => {
            event.target.disabled = true;
            event.target.textContent = "Anchoring…";
            if (await anchorNow()) await fetchAndVerify(recordId);
            else event.target.textContent = "Not anchored yet: try again";
            event.target.disabled = false;
          },
        }, "Anchor now"));
      }
      return;
    }
    $("bundle-input").value = JSON.stringify(answer.data, null, 2);
    await runVerify();
  }

  // ---------------------------------------------------------------------------------------
  // Page: records (search by id or deal, filtered pages, one record with its bundle)
  // ---------------------------------------------------------------------------------------

  const PAGE = 50;

  function listRow(r) {
    return el("tr", { "data-record-id": r.record_id }, ...recordCells(r),
      el("td", { className: "cell-action" }, el("a", {
        className: "button-small",
        href: `#records/${encodeURIComponent(r.record_id)}`,
        "aria-label": `Open ${r.record_id}`,
      }, "Open")));
  }

  function filterQuery() {
    const f = state.list.filters;
    const params = new URLSearchParams();
    if (f.kind) params.set("kind", f.kind);
    if (f.actor) params.set("actor", f.actor);
    if (f.since) params.set("since", `${f.since}T00:00:00Z`);
    if (f.until) params.set("until", `${f.until}T00:00:00Z`);
    return params;
  }

  async function loadList(cursor) {
    const params = filterQuery();
    params.set("cursor", String(cursor));
    params.set("limit", String(PAGE));
    const message = $("list-message");
    const current = freshness("list");
    const [answer] = await Promise.all([api(`/v1/records?${params}`), loadAnchorState()]);
    if (!current()) return;
    const body = $("list-table").tBodies[0];
    if (!answer.ok) {
      body.replaceChildren();
      showMessage(message, answer.problem, "error");
      return;
    }
    const items = answer.data.items;
    state.list.cursor = cursor;
    state.list.next = answer.data.next_cursor;
    body.replaceChildren(...items.map(listRow));
    showMessage(message, items.length ? "" : "No record matches on this page.", "info");
    const first = items.length ? items[0].leaf_index : cursor;
    const last = items.length ? items[items.length - 1].leaf_index : cursor;
    $("page-note").textContent = items.length
      ? `${items.length} record${items.length === 1 ? "" : "s"}, leaves ${first}–${last}`
      : `from leaf ${cursor}`;
    $("page-next").disabled = state.list.next === null;
    $("page-first").disabled = cursor === 0;
  }

  function fact(label, ...value) {
    return el("div", {}, el("dt", {}, label), el("dd", {}, ...value));
  }

  async function openRecord(recordId) {
    const panel = $("record-detail");
    const message = $("search-message");
    const current = freshness("record");
    const [answer] = await Promise.all([
      api(`/v1/records/${encodeURIComponent(recordId)}`), loadAnchorState()]);
    if (!current()) return { ok: false, status: 0, problem: "superseded" };
    if (!answer.ok) {
      panel.hidden = true;
      state.shown = null;
      return answer;
    }
    const r = answer.data;
    state.shown = r;
    const status = proofStatus(r.leaf_index);
    $("record-title").textContent = `Record ${middle(r.record_id, 40) || r.record_id}`;
    $("record-title").title = r.record_id;
    const payload = r.record && isObject(r.record.payload) ? r.record.payload : {};
    const deal = payload.deal_id ?? null;
    $("record-facts").replaceChildren(...[
      fact("Record id", shortCell(r.record_id, 40)),
      fact("Proof", statusBadge(status)),
      fact("Kind", r.kind),
      fact("Actor", shortCell(r.actor, 24)),
      fact("Time (UTC)", utcTime(r.timestamp_ms)),
      fact("Leaf", String(r.leaf_index)),
      fact("Leaf hash", hashCell(r.leaf_hash, 16)),
      deal !== null ? fact("Deal", el("a", { href: `#deals/${deal}` }, `Deal ${deal}`)) : null,
      r.redacted ? fact("Shown", "redacted for your role") : null,
    ].filter(Boolean));
    $("record-json").textContent = JSON.stringify(r.record, null, 2);
    $("record-verify").disabled = status === "pending";
    $("record-download").disabled = status === "pending";
    showMessage($("record-message"), status === "pending"
      ? "Not anchored yet: no bundle can prove it until a checkpoint covering it is on " +
        `chain.${isOfficer() ? " Use “Anchor now” on the Overview." : ""}` : "", "info");
    showMessage(message, "");
    panel.hidden = false;
    return answer;
  }

  async function downloadBundle() {
    const r = state.shown;
    if (!r) return;
    const answer = await bundleOf(r.record_id);
    if (!answer.ok) {
      showMessage($("record-message"), noBundleDetail(answer), "error");
      return;
    }
    const blob = new Blob([`${JSON.stringify(answer.data, null, 2)}\n`],
      { type: "application/json" });
    const link = $("record-download-link");
    link.href = URL.createObjectURL(blob);
    link.download = `${r.record_id.replace(/[^A-Za-z0-9._-]+/g, "_")}.bundle.json`;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
    showMessage($("record-message"), `Bundle saved as ${link.download}.`, "success");
  }

  // Exact record id first; an id of digits that is no record is a deal id.
  async function search(event) {
    if (event) event.preventDefault();
    const text = $("search-id").value.trim();
    const message = $("search-message");
    if (!text) {
      showMessage(message, "Enter a record id or a deal id.", "error");
      return;
    }
    const found = await openRecord(text);
    if (found.ok) {
      history.replaceState(null, "", `#records/${encodeURIComponent(text)}`);
      return;
    }
    if (/^[0-9]{1,18}$/.test(text)) {
      const deal = await api(`/v1/deals/${text}`);
      if (deal.ok) {
        location.hash = `#deals/${text}`;
        return;
      }
    }
    showMessage(message, found.status === 404
      ? `No record or deal “${text}” that you may see (ids are exact, case included).`
      : found.problem, "error");
  }

  async function loadRecords(arg) {
    if (arg) {
      $("search-id").value = arg;
      const found = await openRecord(arg);
      if (!found.ok) {
        showMessage($("search-message"), found.status === 404
          ? `No record “${arg}” that you may see.` : found.problem, "error");
      }
    }
    await loadList(state.list.cursor);
  }

  function applyFilters(event) {
    event.preventDefault();
    state.list.filters = {
      kind: $("filter-kind").value,
      actor: $("filter-actor").value.trim(),
      since: $("filter-since").value,
      until: $("filter-until").value,
    };
    loadList(0);
  }

  // ---------------------------------------------------------------------------------------
  // Page: deals — the list, a deal's parties and money, its story
  // ---------------------------------------------------------------------------------------

  // A party's label: its name from the register, else its role and a short address.
  function partyName(info, address) {
    if (!address) return "—";
    const a = String(address).toLowerCase();
    const found = info ? info.parties.filter((p) => p.address.toLowerCase() === a) : [];
    if (!found.length) return null;
    const roles = [...new Set(found.map((p) => p.role))];
    const name = found[0].name;
    if (!name) return `the ${roles.join(" and ")}`;
    // A register name often says the role already: "Globex (supplier)".
    const said = roles.every((r) => name.toLowerCase().includes(r));
    return said ? name : `${name} (${roles.join(" and ")})`;
  }

  function partyCell(info, address) {
    const name = partyName(info, address);
    if (name === null) return shortCell(address, 14);
    return el("span", { title: address }, name);
  }

  // Who did it, from a record's actor: an address, a key (named by the register), the
  // service itself.
  function actorLabel(info, actor) {
    if (!actor) return "—";
    const text = String(actor).replace(/^eth:/, "");
    if (text === "chainaudit:risk") return "the risk engine";
    if (text.startsWith("chainaudit:")) return "the service";
    if (/^0x[0-9a-fA-F]{40}$/.test(text)) {
      return partyName(info, text) || middle(text, 14) || text;
    }
    const key = /^key:(\w+)$/.exec(text);
    if (key && info) {
      const party = info.parties.find((p) => p.key_ids.includes(key[1]));
      if (party) return partyName(info, party.address);
    }
    if (key) return `key ${key[1]}`;
    return middle(text, 20) || text;
  }

  async function loadDeals(arg) {
    state.parties.clear(); // money moves: each load (and Refresh) reads the parties afresh
    const message = $("deals-message");
    const current = freshness("deals");
    const answer = await allDeals();
    if (!current()) return;
    $("deals-wrap").hidden = true;
    if (answer.status === 404) {
      showMessage(message, "Deals are not available on this server.", "info");
      return;
    }
    if (!answer.ok) {
      showMessage(message, `Could not load deals: ${answer.problem}`, "error");
      return;
    }
    const deals = Array.isArray(answer.data) ? answer.data : [];
    if (!deals.length) {
      showMessage(message, "No deals yet.", "info");
    } else {
      showMessage(message, "");
      const infos = await Promise.all(deals.map((d) => dealParties(d.deal_id)));
      if (!current()) return;
      const head = $("deals-table").tHead.rows[0];
      const columns = ["Deal", "Buyer", "Supplier", "Milestones", "Total", "Funded",
        "Released"];
      head.replaceChildren(...columns.map((c) => el("th", { scope: "col" }, c)),
        el("th", { scope: "col" }, el("span", { className: "sr-only" }, "Actions")));
      $("deals-table").tBodies[0].replaceChildren(...deals.map((deal, i) => {
        const total = (deal.milestones || [])
          .reduce((n, m) => n + (minorAmount(m.amount) || { minor: 0n }).minor, 0n);
        return el("tr", { "data-deal-id": deal.deal_id },
          el("td", { "data-label": "Deal" }, String(deal.deal_id)),
          el("td", { "data-label": "Buyer" }, partyCell(infos[i], deal.buyer)),
          el("td", { "data-label": "Supplier" }, partyCell(infos[i], deal.supplier)),
          el("td", { "data-label": "Milestones" }, milestoneSummary(deal)),
          el("td", { className: "num", "data-label": "Total" },
            units(total, deal.token_decimals)),
          el("td", { className: "num", "data-label": "Funded" },
            units(deal.funded, deal.token_decimals)),
          el("td", { className: "num", "data-label": "Released" },
            units(deal.released, deal.token_decimals)),
          el("td", { className: "cell-action" }, el("button", {
            type: "button",
            className: "button-small",
            "aria-label": `Timeline of deal ${deal.deal_id}`,
            onClick: () => { location.hash = `#deals/${deal.deal_id}`; },
          }, "Timeline")));
      }));
      $("deals-wrap").hidden = false;
    }
    if (arg) await loadTrace(arg);
  }

  // Trace timestamps may be RFC 3339 strings or milliseconds; show both as UTC.
  function traceTime(value) {
    if (typeof value === "number") return utcTime(value);
    const ms = typeof value === "string" ? Date.parse(value) : NaN;
    return Number.isNaN(ms) ? String(value ?? "") : utcTime(ms);
  }

  // One business action, its decision records and its on-chain events form one group:
  // records sharing a transaction, and a risk decision with its clearance, execution, the
  // alert it opened and the hold it placed.
  function decisionKey(entry) {
    const id = entry.record_id;
    const p = entry.payload || {};
    let m = /^risk:(?:decision|clearance|execution):(.+)$/.exec(id);
    if (m) return m[1];
    if (/^risk:(?:alert:[^:]+:opened|hold:placed:)/.test(id) && typeof p.decision_id === "string") {
      m = /^risk:decision:(.+)$/.exec(p.decision_id);
      if (m) return m[1];
    }
    return null;
  }

  function groupEntries(entries) {
    const parent = new Map();
    const find = (x) => {
      while (parent.get(x) !== x) x = parent.get(x);
      return x;
    };
    const union = (a, b) => {
      for (const x of [a, b]) if (!parent.has(x)) parent.set(x, x);
      parent.set(find(a), find(b));
    };
    const keysOf = (e) => {
      const keys = [`r:${e.record_id}`];
      if (e.tx_hash) keys.push(`t:${String(e.tx_hash).toLowerCase()}`);
      const d = decisionKey(e);
      if (d) keys.push(`d:${d}`);
      return keys;
    };
    for (const e of entries) {
      const keys = keysOf(e);
      for (const k of keys) union(keys[0], k);
    }
    const groups = new Map();
    for (const e of entries) {
      const root = find(`r:${e.record_id}`);
      if (!groups.has(root)) groups.set(root, []);
      groups.get(root).push(e);
    }
    return [...groups.values()].sort((a, b) => a[0].leaf_index - b[0].leaf_index);
  }

  const ACTION_WORDS = {
    create: "Deal opened", fund: "Funded", ship: "Shipped", attest: "Inspected (attested)",
    accept: "Accepted", release: "Released", reclaim: "Reclaimed",
    "offer-financing": "Financing offered", "accept-financing": "Financed",
    "request-release": "Release requested", "approve-release": "Release approved",
    dispute: "Disputed", "hold.place": "Hold placed", "hold.renew": "Hold renewed",
    "hold.lift": "Hold lifted", withdraw: "Withdrawn",
  };
  const EVENT_WORDS = {
    DealCreated: "Deal opened", MilestoneFunded: "Funded", MilestoneShipped: "Shipped",
    InspectionAttested: "Inspected (attested)", MilestoneAccepted: "Accepted",
    MilestoneReleased: "Released", FinancingOffered: "Financing offered",
    ReceivableFinanced: "Financed", ReleaseRequested: "Release requested",
    ReleaseApproved: "Release approved", ComplianceHoldPlaced: "Hold placed",
    ComplianceHoldLifted: "Hold lifted", MilestoneRefunded: "Refunded",
    DisputeRaised: "Disputed", DisputeResolved: "Dispute resolved",
  };

  const ZERO_ADDRESS = "0x0000000000000000000000000000000000000000";

  const humanize = (text) => String(text).replace(/[._-]+/g, " ")
    .replace(/([a-z])([A-Z])/g, "$1 $2").replace(/^\w/, (c) => c.toUpperCase());

  // What a group says: its title, amount, milestone, who acted and the outcome.
  function describe(group, info, decimals) {
    const action = group.find((e) => /^action-/.test(e.record_id));
    const events = group.filter((e) => e.kind === "escrow_event");
    const decision = group.find((e) => /^risk:decision:/.test(e.record_id));
    const alert = group.find((e) => /^risk:alert:/.test(e.record_id));
    const hold = group.find((e) => /^risk:hold:/.test(e.record_id));
    const args = events.map((e) => (e.payload && e.payload.args) || {});
    // Off-chain documents number milestones their own way: only the escrow's events and the
    // service's own records (0-based) are read.
    const own = group.filter((e) => /^(?:action-|risk:)/.test(e.record_id))
      .map((e) => e.payload || {});
    const pick = (name) => {
      for (const a of args) {
        if (a[name] !== undefined && a[name] !== ZERO_ADDRESS) return a[name];
      }
      for (const p of own) if (p[name] !== undefined && p[name] !== null) return p[name];
      return null;
    };
    let verb = null;
    if (action) {
      const name = String(action.payload.action || action.event || "").replace(/^deal\./, "");
      verb = ACTION_WORDS[name] || humanize(name);
    } else if (events.length) {
      verb = EVENT_WORDS[events[events.length - 1].event] || humanize(events[0].event);
    } else if (alert || hold || decision) {
      const p = (alert || hold || decision).payload || {};
      if (alert && p.transition) verb = `Alert ${p.transition}${p.resolution ? ` (${p.resolution})` : ""}`;
      else if (hold) verb = /:lifted:/.test(hold.record_id) ? "Hold lifted" : "Hold placed";
      else if (decision) verb = `Risk check: ${humanize(p.action || "action")}`;
      else verb = "Alert";
    } else {
      const e = group[0];
      const p = e.payload || {};
      verb = p.type ? humanize(p.type) : humanize(e.event || e.kind || "record");
    }
    const heldOutcome = decision && decision.payload && decision.payload.outcome === "hold"
      && !group.some((e) => /^risk:execution:/.test(e.record_id));
    if (heldOutcome) verb = `${verb} — held by the risk engine`;
    const milestone = pick("milestone");
    const created = args.filter((a, i) => events[i].event === "MilestoneCreated");
    const amount = events.some((e) => e.event === "DealCreated") && created.length
      ? created.reduce((n, a) => n + (minorAmount(a.amount) || { minor: 0n }).minor, 0n)
      : pick("amount") ?? pick("advance");
    const clearedBy = decision && Array.isArray(decision.payload.cleared_by)
      ? decision.payload.cleared_by : [];
    const actorEntry = action || events[0] || group.find((e) => !/^risk:/.test(e.record_id))
      || alert || group[0];
    let who = actorLabel(info, actorEntry.actor);
    if (alert && alert.payload && alert.payload.by && !action) {
      who = actorLabel(info, alert.payload.by);
    }
    const payee = pick("payee");
    const financier = pick("financier");
    const fired = decision && Array.isArray(decision.payload.fired)
      ? decision.payload.fired.filter((f) => isObject(f)).map((f) => f.rule) : [];
    return {
      title: milestone !== null && milestone !== undefined && !/^Deal opened/.test(verb)
        ? `${verb} · milestone ${Number(milestone) + 1}` : verb,
      amount: amount !== null ? `${units(amount, decimals)}${Number.isInteger(decimals) ? "" : " (minor units)"}` : null,
      who,
      to: payee ? actorLabel(info, payee) : financier ? actorLabel(info, financier) : null,
      fired,
      clearedBy,
      txHash: group.find((e) => e.tx_hash)?.tx_hash || null,
    };
  }

  function groupStatus(group) {
    const order = ["pending", "anchored", "final"];
    return group.map((e) => e.proof_status || "pending")
      .reduce((a, b) => (order.indexOf(a) <= order.indexOf(b) ? a : b), "final");
  }

  function rawEntry(entry, info) {
    const status = entry.proof_status || "pending";
    return el("li", { className: "raw-entry", "data-record-id": entry.record_id },
      el("span", { className: "raw-name" }, entry.event || entry.kind),
      " ", statusBadge(status), " ",
      el("a", { href: `#records/${encodeURIComponent(entry.record_id)}` },
        shortCell(entry.record_id, 28, "record-id")),
      el("span", { className: "timeline-meta" }, ` · ${entry.kind} by ` +
        `${actorLabel(info, entry.actor)} · leaf ${entry.leaf_index}`),
      status !== "pending" ? el("button", {
        type: "button",
        className: "button-small",
        "aria-label": `Verify ${entry.record_id} in this browser`,
        onClick: () => fetchAndVerify(entry.record_id),
      }, "Verify") : null);
  }

  function storyEntry(group, info, decimals) {
    const story = describe(group, info, decimals);
    const status = groupStatus(group);
    return el("li", { className: "timeline-entry", "data-group": group[0].record_id,
      "data-records": String(group.length) },
    el("div", { className: "timeline-time" }, traceTime(group[0].timestamp)),
    el("div", { className: "timeline-body" },
      el("p", { className: "timeline-title" },
        el("strong", {}, story.title), " ",
        story.amount ? el("span", { className: "amount" }, story.amount) : null, " ",
        statusBadge(status)),
      el("p", { className: "timeline-meta" }, `by ${story.who}`,
        story.to ? ` · to ${story.to}` : "",
        story.fired.length ? ` · rules fired: ${story.fired.join(", ")}` : "",
        story.clearedBy.length ? ` · cleared by ${story.clearedBy.join(", ")}` : ""),
      el("details", { className: "raw" },
        el("summary", {}, `${group.length} audited record${group.length === 1 ? "" : "s"}`,
          story.txHash ? [" · tx ", hashCell(story.txHash)] : null),
        el("ul", { className: "raw-list" }, group.map((e) => rawEntry(e, info))))));
  }

  function dealSummary(deal, info) {
    const d = deal.token_decimals;
    const parties = info ? info.parties : [];
    const partyItems = parties.map((p) => el("li", {},
      el("span", { className: "party-role" }, p.role), " ",
      p.name ? el("span", { title: p.address }, p.name) : shortCell(p.address, 14)));
    const milestones = (deal.milestones || []).map((m) => {
      const financed = m.financed ? ` · financed by ${actorLabel(info, m.payee)}` : "";
      const offer = m.offer ? ` · financing offered to ${actorLabel(info, m.offer.financier)}`
        : "";
      const hold = m.hold && m.hold.active
        ? ` · on hold until ${utcTime(m.hold.until * 1000)}` : "";
      const approval = m.approval
        ? ` · release approvals ${m.approval.approvals} of ${deal.approvals_required}` : "";
      return el("li", { "data-milestone": m.index },
        el("strong", {}, `Milestone ${m.index + 1}`), `: ${m.status} · `,
        el("span", { className: "amount" }, units(m.amount, d)),
        ` · released ${units(m.released, d)} to ${actorLabel(info, m.payee)}`,
        financed, offer, hold, approval);
    });
    return [
      el("h3", {}, "Parties"), el("ul", { className: "parties" }, partyItems),
      el("h3", {}, "Milestones"), el("ul", { className: "milestones" }, milestones)];
  }

  async function loadTrace(id) {
    if (!id) return;
    state.parties.clear(); // money moves: each load (and Refresh) reads the parties afresh
    $("trace-id").value = id;
    $("trace").hidden = false;
    $("trace-title").textContent = `Deal ${id}`;
    const message = $("trace-message");
    const timeline = $("timeline");
    timeline.replaceChildren();
    $("deal-summary").replaceChildren();
    const current = freshness("trace");
    const [answer, deal, info] = await Promise.all([
      api(`/v1/deals/${encodeURIComponent(id)}/trace`),
      api(`/v1/deals/${encodeURIComponent(id)}`),
      dealParties(id),
    ]);
    if (!current()) return;
    if (answer.status === 404) {
      showMessage(message, `Timeline not available (${answer.problem}).`, "info");
      return;
    }
    if (!answer.ok) {
      showMessage(message, answer.problem, "error");
      return;
    }
    const decimals = deal.ok ? deal.data.token_decimals : undefined;
    if (deal.ok) $("deal-summary").replaceChildren(...dealSummary(deal.data, info));
    const entries = (answer.data && answer.data.entries) || [];
    state.trace = { entries, info, decimals };
    showMessage(message, entries.length ? "" : "No entries yet.", "info");
    renderTimeline();
  }

  function renderTimeline() {
    const trace = state.trace;
    if (!trace) return;
    const timeline = $("timeline");
    timeline.replaceChildren(...groupEntries(trace.entries).map((g) =>
      storyEntry(g, trace.info, trace.decimals)));
    const open = $("trace-raw").checked;
    for (const details of timeline.querySelectorAll("details")) details.open = open;
  }

  // ---------------------------------------------------------------------------------------
  // Page: compliance — alerts, holds, approvals, incidents, reconciliation
  // ---------------------------------------------------------------------------------------

  function card(attributes, title, ...body) {
    return el("article", { className: "card", ...attributes },
      el("h3", { className: "card-title" }, title), ...body);
  }

  // Run a compliance action, say what happened, reload the view.
  async function act(button, path, body, done) {
    const message = $("compliance-message");
    button.disabled = true;
    const answer = await api(path, { method: "POST", body });
    button.disabled = false;
    if (!answer.ok) {
      showMessage(message, `Refused: ${answer.problem}`, "error");
      return;
    }
    showMessage(message, done(answer), "success");
    await loadCompliance(false);
  }

  function alertCard(a, decimals) {
    const officer = isOfficer();
    const path = `/v1/alerts/${a.alert_id}`;
    const replay = el("p", { className: "replay", "data-replay": a.alert_id, hidden: true });
    const actions = [];
    if (officer && a.status === "open") {
      actions.push(el("button", { type: "button", className: "button-small",
        onClick: (e) => act(e.target, `${path}/acknowledge`, { note: "seen in the page" },
          () => `Alert ${a.alert_id} acknowledged.`) }, "Acknowledge"));
    }
    if (officer && a.status !== "resolved") {
      actions.push(el("button", { type: "button", className: "button-small",
        onClick: (e) => act(e.target, `${path}/resolve`,
          { resolution: "cleared", note: "cleared in the page" },
          (answer) => `Clearing ${a.alert_id} frees money, so a second officer must approve ` +
            `it: request ${answer.data.approval_id} now waits below.`) },
      "Clear (second officer approves)"));
      actions.push(el("button", { type: "button", className: "button-small",
        onClick: (e) => act(e.target, `${path}/resolve`,
          { resolution: "confirmed", note: "risk confirmed in the page" },
          () => `Alert ${a.alert_id} resolved: risk confirmed.`) }, "Confirm the risk"));
    }
    actions.push(el("button", { type: "button", className: "button-small",
      onClick: async () => {
        const answer = await api(`${path}/replay`);
        replay.hidden = false;
        if (!answer.ok) {
          replay.textContent = `Replay refused: ${answer.problem}`;
          return;
        }
        const r = answer.data;
        replay.className = `replay ${r.matches ? "replay-ok" : "replay-bad"}`;
        replay.textContent = r.matches
          ? `Replay matches: recorded ${r.recorded_outcome}, replayed ${r.replayed_outcome} ` +
            `with rule set ${middle(r.rule_set_hash || "", 18) || r.rule_set_hash}; fired: ` +
            `${r.fired.join(", ") || "none"}.`
          : `Replay differs: ${r.problems.join("; ")}`;
      } }, "Replay the decision"));
    const amount = /amount (\d+) is above the threshold (\d+)/.exec(a.summary || "");
    const figures = amount && Number.isInteger(decimals)
      ? `amount ${units(amount[1], decimals)} is above the threshold ` +
        `${units(amount[2], decimals)}` : a.summary;
    return card({ "data-alert-id": a.alert_id },
      [`${a.severity} alert `, el("code", {}, a.alert_id), " ", statusBadge(a.status)],
      el("p", {}, `${humanize(a.action)} of deal ${a.deal_id ?? "—"}` +
        `${a.milestone !== null ? `, milestone ${a.milestone + 1}` : ""}: ${a.outcome}.`),
      el("p", {}, el("strong", {}, "Rules fired: "), a.rules.join(", "), ` — ${figures}`),
      el("p", { className: "timeline-meta" }, `owner ${a.owner} · opened ` +
        `${utcTime(a.opened_ms)}${a.acknowledged_ms ? ` · acknowledged ` +
        `${utcTime(a.acknowledged_ms)}` : ""}`),
      replay,
      el("div", { className: "form-actions" }, actions));
  }

  async function holdCard(deal, m, alerts) {
    const alert = alerts.find((a) => String(a.deal_id) === String(deal.deal_id)
      && a.milestone === m.index);
    const info = await dealParties(deal.deal_id);
    const actions = [];
    if (isOfficer()) {
      actions.push(el("button", { type: "button", className: "button-small",
        onClick: async (e) => {
          // The reason is the alert's latest record (its resolution), as the demo does; a
          // hold without an alert keeps its own reason.
          let reason = hex0x(m.hold.reason_hash);
          if (alert) {
            const last = await api(`/v1/records/${encodeURIComponent(
              alert.records[alert.records.length - 1])}`);
            if (last.ok) reason = last.data.leaf_hash;
          }
          const body = { reason_hash: reason };
          if (alert) body.alert_id = alert.alert_id;
          await act(e.target, `/v1/deals/${deal.deal_id}/milestones/${m.index}/hold/lift`, body,
            (answer) => `Lifting the hold frees money, so a second officer must approve it: ` +
              `request ${answer.data.approval_id} now waits below.`);
        } }, "Ask to lift the hold"));
    }
    return card({ "data-hold": `${deal.deal_id}:${m.index}` },
      `Deal ${deal.deal_id}, milestone ${m.index + 1}: ${units(m.amount, deal.token_decimals)} on hold`,
      el("p", {}, `Expires ${utcTime(m.hold.until * 1000)} UTC · payee ` +
        `${actorLabel(info, m.payee)} · milestone ${m.status}`),
      el("p", { className: "timeline-meta" }, "reason ", hashCell(m.hold.reason_hash),
        alert ? ` · alert ${alert.alert_id} (${alert.status})` : ""),
      el("div", { className: "form-actions" }, actions));
  }

  function approvalCard(p) {
    const actions = [];
    // The officer who asked may not decide (the API refuses it): no buttons for it.
    const asked = Boolean(state.me) && p.requested_by === `key:${state.me.key_id}`;
    if (isOfficer() && !asked) {
      for (const [verb, label] of [["approve", "Approve"], ["reject", "Reject"]]) {
        actions.push(el("button", { type: "button",
          className: verb === "approve" ? "button-small button-go" : "button-small",
          onClick: (e) => act(e.target, `/v1/approvals/${p.approval_id}/${verb}`,
            { note: `${verb}d in the page` },
            (answer) => `Request ${p.approval_id} ${answer.data.status}` +
              `${answer.data.error ? `: ${answer.data.error}` : ""}.`) }, label));
      }
    }
    const params = Object.entries(p.params || {}).map(([k, v]) => `${k} ${middle(String(v), 18)
      || v}`).join(" · ");
    return card({ "data-approval-id": p.approval_id },
      [`${p.action} `, el("code", {}, p.approval_id), " ", statusBadge(p.status)],
      el("p", {}, params || "no parameters"),
      el("p", { className: "timeline-meta" }, `asked by ${p.requested_by} at ` +
        `${utcTime(p.requested_ms)}${p.note ? ` · “${p.note}”` : ""} · ` +
        `${asked ? "you asked: " : ""}a different officer must approve`),
      el("div", { className: "form-actions" }, actions));
  }

  // Every decision record (officers, auditors and regulators see them whole), a page at a
  // time up to a bound.
  async function decisionRecords() {
    const found = [];
    let cursor = 0;
    for (let pages = 0; pages < 5 && cursor !== null; pages += 1) {
      const answer = await api(`/v1/records?kind=decision&limit=1000&cursor=${cursor}`);
      if (!answer.ok) break;
      found.push(...answer.data.items);
      cursor = answer.data.next_cursor;
    }
    return found;
  }

  function incidentCards(decisions) {
    const incidents = new Map();
    for (const r of decisions) {
      const p = r.record && r.record.payload;
      if (!p || p.type !== "incident") continue;
      if (!incidents.has(p.incident_id)) incidents.set(p.incident_id, []);
      incidents.get(p.incident_id).push({ ...p, at: r.timestamp_ms, id: r.record_id });
    }
    return [...incidents.entries()].reverse().map(([id, steps]) => {
      const first = steps[0].details || {};
      const closed = steps.some((s) => s.step === "reviewed");
      return card({ "data-incident": id },
        [`${first.title || "Incident"} `, el("code", {}, id), " ",
          statusBadge(closed ? "closed" : "open")],
        el("ol", { className: "steps" }, steps.map((s) => el("li", {},
          el("strong", {}, s.step), ` · ${utcTime(s.at)}${s.note ? ` · ${s.note}` : ""}`))));
    });
  }

  function reconcileView(decisions) {
    const reports = decisions.filter((r) => r.record && r.record.payload
      && r.record.payload.type === "reconciliation");
    if (!reports.length) return null;
    const r = reports[reports.length - 1];
    const p = r.record.payload;
    const checked = Object.entries(p.checked || {}).map(([k, v]) => `${v} ${k}`).join(", ");
    return card({ "data-reconcile": r.record_id },
      [p.clean ? "No difference " : `${p.difference_count} difference(s) `,
        el("span", { className: `status status-${p.clean ? "clean" : "differences"}` },
          p.clean ? "clean" : "differs")],
      el("p", {}, `At block ${p.block_number} and log size ${p.tree_size} ` +
        `(${utcTime(r.timestamp_ms)}); checked ${checked || "—"}.`),
      p.differences && p.differences.length ? el("ul", { className: "differences" },
        p.differences.map((d) => el("li", {}, el("strong", {}, d.kind), ` ${d.subject}: ` +
          `${d.detail}${d.chain !== null && d.chain !== undefined ? ` (chain ${d.chain}, ` +
          `log ${d.log})` : ""}`))) : null,
      el("p", {}, el("a", { href: `#records/${encodeURIComponent(r.record_id)}` },
        "The report's record")));
  }

  function fill(listId, emptyId, nodes) {
    $(listId).replaceChildren(...nodes);
    $(emptyId).hidden = nodes.length > 0;
  }

  async function loadCompliance(clear = true) {
    state.parties.clear(); // money moves: each load (and Refresh) reads the parties afresh
    if (!seesAll()) return;
    if (clear) showMessage($("compliance-message"), "");
    $("compliance-role-note").textContent = isOfficer()
      ? "You may act: acknowledging and confirming act at once; clearing an alert and " +
        "lifting a hold free money and wait for a second officer's approval."
      : "Your role reads everything here; officers (admin, operator) act.";
    const current = freshness("compliance");
    // The alerts still to work, all of them (the API lists newest first, up to 1,000 of a
    // status), and the latest 200 resolved ones.
    const [open, acknowledged, resolvedAlerts, approvals, deals, decisions] = await Promise.all([
      api("/v1/alerts?status=open&limit=1000"), api("/v1/alerts?status=acknowledged&limit=1000"),
      api("/v1/alerts?status=resolved&limit=200"), api("/v1/approvals"), allDeals(),
      decisionRecords()]);
    const alerts = [open, acknowledged, resolvedAlerts].find((a) => !a.ok) || open;
    const dealList = deals.ok && Array.isArray(deals.data) ? deals.data : [];
    const decimals = dealList.length ? dealList[0].token_decimals : undefined;
    const alertItems = [open, acknowledged, resolvedAlerts]
      .flatMap((a) => (a.ok && a.data && Array.isArray(a.data.items) ? a.data.items : []));
    alertItems.sort((a, b) => b.opened_ms - a.opened_ms); // newest first, as the API lists
    const heldCards = [];
    const waiting = [];
    for (const deal of dealList) {
      for (const m of deal.milestones || []) {
        if (m.hold && m.hold.active) heldCards.push(holdCard(deal, m, alertItems));
        if (m.approval && m.status !== "released" && m.approval.approvals
            < deal.approvals_required) {
          waiting.push(card({ "data-release": `${deal.deal_id}:${m.index}` },
            `Deal ${deal.deal_id}, milestone ${m.index + 1}: ` +
            `${units(m.amount, deal.token_decimals)}`,
            el("p", {}, `${m.approval.approvals} of ${deal.approvals_required} approvals; ` +
              `milestone ${m.status}.`)));
        }
      }
    }
    const held = await Promise.all(heldCards);
    if (!current()) return;
    fill("alerts", "alerts-empty", alertItems.filter((a) => a.status !== "resolved")
      .map((a) => alertCard(a, decimals)));
    const resolved = alertItems.filter((a) => a.status === "resolved");
    $("resolved-alerts").replaceChildren(...resolved.map((a) => alertCard(a, decimals)));
    $("resolved-count").textContent = String(resolved.length);
    fill("holds", "holds-empty", held);
    fill("approvals", "approvals-empty", approvals.ok
      ? approvals.data.items.filter((p) => p.status === "pending").map(approvalCard) : []);
    fill("releases", "releases-empty", waiting);
    fill("incidents", "incidents-empty", incidentCards(decisions));
    const report = reconcileView(decisions);
    fill("reconcile", "reconcile-empty", report ? [report] : []);
    const problems = [alerts, approvals, deals].filter((a) => !a.ok).map((a) => a.problem);
    if (problems.length) showMessage($("compliance-message"), problems.join("; "), "error");
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
    $("pin-trust").addEventListener("click", pinTrust);
    $("unpin-trust").addEventListener("click", unpinTrust);
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
    $("search-form").addEventListener("submit", search);
    $("filter-form").addEventListener("submit", applyFilters);
    $("page-first").addEventListener("click", () => loadList(0));
    $("page-next").addEventListener("click", () => {
      if (state.list.next !== null) loadList(state.list.next);
    });
    $("record-verify").addEventListener("click", () => {
      if (state.shown) fetchAndVerify(state.shown.record_id);
    });
    $("record-download").addEventListener("click", downloadBundle);
    $("deals-refresh").addEventListener("click", () => loadDeals(null));
    $("trace-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const id = $("trace-id").value.trim();
      if (id) location.hash = `#deals/${encodeURIComponent(id)}`;
    });
    $("trace-raw").addEventListener("change", renderTimeline);
    $("compliance-refresh").addEventListener("click", () => loadCompliance());
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
