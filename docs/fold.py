# fold.py: RFC 9162 §2.1.3.2; prints the root the proof implies, or exits 1
import hashlib, json, sys

b = json.load(open(sys.argv[1]))
node = lambda l, r: hashlib.sha256(b"\x01" + l + r).digest()
fn, sn = b["leaf_index"], b["tree_size"] - 1
r = bytes.fromhex(b["leaf_hash"][2:])
if fn > sn or b["tree_size"] != b["checkpoint"]["tree_size"]:
    sys.exit("leaf index outside the tree, or tree_size differs from the checkpoint")
for p in (bytes.fromhex(h[2:]) for h in b["inclusion_proof"]):
    if sn == 0:
        sys.exit("proof too long")
    if fn & 1 or fn == sn:
        r = node(p, r)
        while fn and not fn & 1:
            fn >>= 1
            sn >>= 1
    else:
        r = node(r, p)
    fn >>= 1
    sn >>= 1
if sn != 0:
    sys.exit("proof too short")
print("0x" + r.hex())
