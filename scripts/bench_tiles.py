"""Benchmark the C2SP tlog-tiles read path against the dynamic proof endpoint, in one run.

1. The log is filled to --records leaves (1,000,000 by default, written straight through the
   store), a signed checkpoint of its size stored, and `chainaudit publish` run into a
   directory (timed).
2. `chainaudit serve` (its own process, one uvicorn worker, no chain) and a static file server
   over the published directory (`python -m http.server`, its own process) are driven by `wrk`
   (a C load generator; `make bench` installs it) for --seconds each:
   * random full level-0 hash tiles (8 KiB) and random full entry bundles (no
     Accept-Encoding, so uncompressed), from both;
   * the checkpoint (the static file; from serve only when it has `GET /checkpoint`);
   * `GET /v1/records/{id}/proof` for random records, from serve (the dynamic path).
3. A client reconstructs and verifies inclusion proofs of random records from tiles alone,
   with a cold cache for each proof (every tile it needs is fetched, one HTTP request after
   another, on a kept-alive connection): milliseconds per proof, from serve and from the
   static server.

Writes reports/bench_tiles.json.

    .venv/bin/python scripts/bench_tiles.py
    .venv/bin/python scripts/bench_tiles.py --records 100000 --seconds 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_api import fill, issue_key, start_server, stop_server

from chainaudit.chain.devnet import free_port
from chainaudit.core import merkle, note, tlogtiles
from chainaudit.log.publish import Publisher
from chainaudit.log.store import Log

ROOT = Path(__file__).resolve().parents[1]
ORIGIN = "bench.chainaudit.example/log"

PATHS_SCRIPT = """
local paths = {PATHS}
local headers = {HEADERS}
request = function()
  return wrk.format("GET", paths[math.random(1, #paths)], headers)
end
"""


def wrk(
    url: str,
    paths: list[str],
    seconds: float,
    connections: int,
    workdir: Path,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Requests/s and latency of GETs of random ``paths``; every answer must be 2xx."""
    binary = shutil.which("wrk")
    if binary is None:
        raise SystemExit("bench_tiles: wrk is not installed (make bench installs it)")
    script = workdir / "paths.lua"
    lua_paths = "{" + ",".join(json.dumps(p) for p in paths) + "}"
    lua_headers = (
        "{"
        + ",".join(f"[{json.dumps(k)}]={json.dumps(v)}" for k, v in (headers or {}).items())
        + "}"
    )
    script.write_text(PATHS_SCRIPT.replace("{PATHS}", lua_paths).replace("{HEADERS}", lua_headers))
    out = subprocess.run(
        [binary, "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), "--latency", url],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"bench_tiles: some requests to {url} failed:\n{out}")

    def latency(label: str) -> float:
        match = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        if match is None:
            raise SystemExit(f"bench_tiles: cannot read the {label} latency from wrk:\n{out}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise SystemExit(f"bench_tiles: cannot read wrk's output:\n{out}")
    return {
        "requests_per_s": float(rate.group(1)),
        "p50_ms": latency("50%"),
        "p99_ms": latency("99%"),
    }


def start_static(directory: Path, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/checkpoint", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the static server did not start")


class TileClient:
    """Inclusion proofs from tiles alone (c2sp.org/tlog-tiles), each with a cold cache."""

    def __init__(self, client: httpx.Client, size: int) -> None:
        self.client = client
        self.size = size
        self.cache: dict[tuple[int, int], list[bytes]] = {}
        self.fetched = 0

    def tile(self, level: int, index: int) -> list[bytes]:
        key = (level, index)
        if key not in self.cache:
            nodes = self.size >> (tlogtiles.TILE_HEIGHT * level)
            width = min(tlogtiles.TILE_WIDTH, nodes - tlogtiles.TILE_WIDTH * index)
            path = tlogtiles.TileRef(level, index, width).path()
            response = self.client.get(f"/{path}")
            response.raise_for_status()
            self.cache[key] = tlogtiles.split_hashes(response.content)
            self.fetched += 1
        return self.cache[key]

    def node(self, height: int, index: int) -> bytes:
        """The hash of the perfect subtree at ``height`` number ``index``: from the tile of
        level ``height // 8``, hashing up the levels inside the tile."""
        level, up = divmod(height, tlogtiles.TILE_HEIGHT)
        first = index << up
        hashes = self.tile(level, first // tlogtiles.TILE_WIDTH)
        at = first % tlogtiles.TILE_WIDTH
        return merkle.root_hash(hashes[at : at + (1 << up)])

    def prove(self, leaf: int) -> tuple[bytes, list[bytes]]:
        """The leaf hash and its inclusion proof in the tree of ``size``."""
        self.cache.clear()
        proof = [
            merkle.fold_blocks([self.node(h, i) for h, i in merkle.perfect_blocks(start, end)])
            for start, end in merkle.inclusion_ranges(leaf, self.size)
        ]
        return self.node(0, leaf), proof


def proof_ms(url: str, size: int, root: bytes, count: int, seed: int) -> dict[str, float]:
    rng = random.Random(seed)
    times, tiles = [], []
    with httpx.Client(base_url=url, timeout=30) as client:
        tile_client = TileClient(client, size)
        for _ in range(count):
            leaf = rng.randrange(size)
            started = time.perf_counter()
            tile_client.fetched = 0
            leaf_hash, proof = tile_client.prove(leaf)
            merkle.verify_inclusion(leaf_hash, leaf, size, proof, root)
            times.append((time.perf_counter() - started) * 1000)
            tiles.append(tile_client.fetched)
    return {
        "mean_ms": statistics.fmean(times),
        "p50_ms": statistics.median(times),
        "tiles_per_proof": statistics.fmean(tiles),
        "proofs": count,
    }


def full_paths(size: int, level: int | None, count: int, seed: int) -> list[str]:
    refs = [ref for ref in tlogtiles.tiles_for(size, level) if not ref.partial]
    rng = random.Random(seed)
    return ["/" + ref.path() for ref in rng.sample(refs, min(count, len(refs)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--proofs", type=int, default=200, help="proofs from tiles per server")
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "bench_tiles.json")
    args = parser.parse_args()
    if args.records < 256:
        raise SystemExit("bench_tiles: --records must be at least 256 (one full tile)")

    with tempfile.TemporaryDirectory(prefix="bench-tiles-") as tmp:
        data_dir, published = Path(tmp) / "data", Path(tmp) / "published"
        token = issue_key(data_dir)
        print(f"filling the log to {args.records:,} records ...", flush=True)
        fill(data_dir, args.records)
        signer = note.Signer.generate(ORIGIN)
        with Log.open(data_dir) as log:
            size, root = log.size, log.root()
            text = note.sign_checkpoint(signer, note.Checkpoint(ORIGIN, size, root)).encode()
            log.put_signed_checkpoint(size, text)
            print("publishing ...", flush=True)
            started = time.perf_counter()
            done = Publisher(log, published).publish()
            publish_s = time.perf_counter() - started
        files = sum(1 for p in published.rglob("*") if p.is_file())
        megabytes = sum(p.stat().st_size for p in published.rglob("*") if p.is_file()) / 1e6

        tiles = full_paths(size, 0, 2000, 1)
        entries = full_paths(size, None, 2000, 2)
        ids = [
            f"/v1/records/bench-{i:09d}/proof" for i in random.Random(3).sample(range(size), 2000)
        ]
        results: dict[str, Any] = {}
        work = Path(tmp)
        serve_port, static_port = free_port(), free_port()
        os.environ["CHAINAUDIT_TILES_ENTRIES"] = "true"  # entry bundles are off by default
        server = start_server(data_dir, serve_port)
        static = start_static(published, static_port)
        try:
            serve_url = f"http://127.0.0.1:{serve_port}"
            static_url = f"http://127.0.0.1:{static_port}"
            has_checkpoint = httpx.get(f"{serve_url}/checkpoint").status_code == 200
            runs: list[tuple[str, str, list[str], dict[str, str] | None]] = [
                ("serve_tiles", serve_url, tiles, None),
                ("static_tiles", static_url, tiles, None),
                ("serve_entries", serve_url, entries, None),
                ("static_entries", static_url, entries, None),
                ("static_checkpoint", static_url, ["/checkpoint"], None),
                ("serve_proof_endpoint", serve_url, ids, {"Authorization": f"Bearer {token}"}),
            ]
            if has_checkpoint:
                runs.insert(4, ("serve_checkpoint", serve_url, ["/checkpoint"], None))
            for name, url, paths, headers in runs:
                print(f"{name} ...", flush=True)
                results[name] = wrk(url, paths, args.seconds, args.concurrency, work, headers)
            for name, url in (("serve", serve_url), ("static", static_url)):
                print(f"proofs from tiles ({name}) ...", flush=True)
                results[f"{name}_proof_from_tiles"] = proof_ms(url, size, root, args.proofs, 4)
        finally:
            stop_server(server)
            static.terminate()
            static.wait(timeout=30)

    report = {
        "log_size": size,
        "publish": {
            "seconds": publish_s,
            "files": files,
            "megabytes": megabytes,
            "written": done.written,
        },
        "serve_has_checkpoint_endpoint": has_checkpoint,
        **results,
        "concurrency": args.concurrency,
        "seconds_each": args.seconds,
        "machine": {"cpus": os.cpu_count()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nlog of {size:,} records; publish: {publish_s:.1f} s, {files:,} files, ", end="")
    print(f"{megabytes:,.0f} MB")
    for name, value in results.items():
        if "requests_per_s" in value:
            rate, p50, p99 = value["requests_per_s"], value["p50_ms"], value["p99_ms"]
            print(f"{name:24} {rate:>10,.0f} req/s  p50 {p50:.2f} ms  p99 {p99:.2f} ms")
        else:
            mean, p50, count = value["mean_ms"], value["p50_ms"], value["tiles_per_proof"]
            print(f"{name:24} {mean:>10.2f} ms/proof (p50 {p50:.2f} ms, {count:.1f} tiles)")
    if not has_checkpoint:
        print("serve has no GET /checkpoint in this build: its checkpoint rate is not measured")
    print(f"report: {args.out}")


if __name__ == "__main__":
    main()
