"""What confidential records cost: key wrap, seal, open and the vault's on-chain check, per suite.

    .venv/bin/python benchmarks/privacy_bench.py [--json OUT] [--repeat N] [--readers R]

For each suite it times, on one thread: wrapping and unwrapping a data key (X25519+HKDF+
AES-GCM on intl, SM2 encryption on gm), sealing a 1 KiB value to R readers and the escrow,
opening it as one reader, and decoding the sealed record as the vault contract does on every
validator (`decode_sealed`, no private key). Each figure is the median of N runs of a fixed
number of operations, in microseconds per operation. Results are printed and written as JSON
(default bench-results/privacy_bench.json).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consortia.crypto import SUITE_NAMES, suite
from consortia.privacy import ESCROW_PARTY, Reader, decode_sealed, encode_sealed, open_sealed, seal

DEFAULT_JSON = Path("bench-results/privacy_bench.json")
VALUE = {"goods": "x" * 1000, "unit_price": 512_000, "discount_bp": 350}
OPERATIONS = {"intl": 200, "gm": 40}  # per timed run: about a tenth of a second each


def _median_us(run: Callable[[], object], n: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(n):
            run()
        times.append((time.perf_counter() - start) / n * 1e6)
    return round(statistics.median(times), 1)


def measure(suite_name: str, readers: int, repeat: int) -> dict[str, Any]:
    chain = suite(suite_name)
    n = OPERATIONS[suite_name]
    keys = [chain.generate_encryption_keypair() for _ in range(readers + 1)]
    party_readers = [Reader(f"party-{i}", 1, keys[i][1]) for i in range(readers)]
    escrow = Reader(ESCROW_PARTY, 1, keys[-1][1])
    data_key = chain.generate_aead_key()
    wrapped = chain.wrap_key(keys[0][1], data_key, b"context")
    sealed = seal(chain, "bench.record", VALUE, party_readers, escrow)
    encoded = encode_sealed(sealed)
    return {
        "suite": suite_name,
        "readers": readers,
        "sealed_bytes": len(encoded) // 2,
        "wrap_us": _median_us(lambda: chain.wrap_key(keys[0][1], data_key, b"context"), n, repeat),
        "unwrap_us": _median_us(
            lambda: chain.unwrap_key(keys[0][0], wrapped, b"context"), n, repeat
        ),
        "seal_us": _median_us(
            lambda: seal(chain, "bench.record", VALUE, party_readers, escrow),
            max(1, n // (readers + 1)),
            repeat,
        ),
        "open_us": _median_us(lambda: open_sealed(chain, sealed, "party-0", keys[0][0]), n, repeat),
        "vault_decode_us": _median_us(lambda: decode_sealed(encoded), n * 5, repeat),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--readers", type=int, default=3)
    options = parser.parse_args()
    results = [measure(name, options.readers, options.repeat) for name in SUITE_NAMES]
    columns = ("wrap", "unwrap", "seal", "open", "decode")
    print(f"{'suite':6} {'sealed B':>9} " + " ".join(f"{c:>8}" for c in columns) + "  (µs)")
    for r in results:
        print(
            f"{r['suite']:6} {r['sealed_bytes']:>9} {r['wrap_us']:>8} {r['unwrap_us']:>8}"
            f" {r['seal_us']:>8} {r['open_us']:>8} {r['vault_decode_us']:>8}"
        )
    options.json.parent.mkdir(parents=True, exist_ok=True)
    document = {"machine": platform.platform(), "repeat": options.repeat, "results": results}
    options.json.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {options.json}")


if __name__ == "__main__":
    main()
