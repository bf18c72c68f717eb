"""Throughput of the crypto suites, and of gmalglib's SM2 for comparison with tongsuopy.

    .venv/bin/python benchmarks/crypto_bench.py [--json OUT] [--repeat N] [--seconds S]

For each suite it measures operations per second of sign, verify, verify_many (the parallel
batch verifier, every core), hash of 200-byte inputs and AEAD encrypt of 1 KiB. Each figure is
the median of N timed runs, each sized to take about S seconds. When the optional package
gmalglib is importable it also measures gmalglib's SM2 sign and verify on one thread and on two,
next to the gm suite (tongsuopy) run through the same two-thread harness. gmalglib is not a
project dependency; without it that section is skipped with a note.

Results are printed and written as JSON (default bench-results/crypto_bench.json).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from consortia.crypto import SUITE_NAMES, Suite, VerifyItem, suite

DEFAULT_JSON = Path("bench-results/crypto_bench.json")
HASH_INPUT_SIZE = 200
AEAD_INPUT_SIZE = 1024
SIGNERS = 8
THREADS = 2

Run = Callable[[int], None]
"""Performs n operations."""


def _time(run: Run, n: int) -> float:
    start = time.perf_counter()
    run(n)
    return time.perf_counter() - start


def _calibrate(run: Run, seconds: float) -> int:
    """An operation count that makes one run last about `seconds`."""
    n = 8
    while True:
        elapsed = _time(run, n)
        if elapsed >= seconds / 4 or n >= 1 << 24:
            return max(1, int(n * seconds / max(elapsed, 1e-9)))
        n *= 4


def measure(run: Run, repeat: int, seconds: float) -> dict[str, Any]:
    n = _calibrate(run, seconds)
    rates = [n / _time(run, n) for _ in range(repeat)]
    return {"ops_per_s": statistics.median(rates), "ops_per_run": n, "samples": rates}


def _in_threads(per_thread: Callable[[int], Run], threads: int) -> Run:
    """A Run that splits n operations over `threads` threads, each with its own callable."""
    workers = [per_thread(i) for i in range(threads)]

    def run(n: int) -> None:
        share = [n // threads + (1 if i < n % threads else 0) for i in range(threads)]
        pool = [threading.Thread(target=workers[i], args=(share[i],)) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()

    return run


def _signed_items(s: Suite, count: int) -> list[VerifyItem]:
    keys = [s.generate_keypair() for _ in range(SIGNERS)]
    items: list[VerifyItem] = []
    for i in range(count):
        private, public = keys[i % SIGNERS]
        message = i.to_bytes(8, "big") * 16  # 128 bytes, about a vote's signing bytes
        items.append((public, message, s.sign(private, message)))
    return items


def bench_suite(s: Suite, repeat: int, seconds: float) -> dict[str, Any]:
    private, _public = s.generate_keypair()
    items = _signed_items(s, 1024)
    hash_input = os.urandom(HASH_INPUT_SIZE)
    aead_key = s.generate_aead_key()
    aead_input = os.urandom(AEAD_INPUT_SIZE)
    sign_input = items[0][1]

    def sign(n: int) -> None:
        for _ in range(n):
            s.sign(private, sign_input)

    def verify(n: int) -> None:
        for i in range(n):
            public, message, signature = items[i % len(items)]
            if not s.verify(public, message, signature):
                raise AssertionError("a valid signature failed to verify")

    def verify_many(n: int) -> None:
        batch = [items[i % len(items)] for i in range(n)]
        if not all(s.verify_many(batch)):
            raise AssertionError("a valid signature failed to verify")

    def hash_200(n: int) -> None:
        for _ in range(n):
            s.hash(hash_input)

    def encrypt_1k(n: int) -> None:
        for _ in range(n):
            s.encrypt(aead_key, aead_input, b"")

    def verify_on(thread: int) -> Run:
        def run(n: int) -> None:
            for i in range(n):
                public, message, signature = items[(thread * 512 + i) % len(items)]
                if not s.verify(public, message, signature):
                    raise AssertionError("a valid signature failed to verify")

        return run

    def sign_on(_thread: int) -> Run:
        return sign

    return {
        "sign": measure(sign, repeat, seconds),
        "verify": measure(verify, repeat, seconds),
        "verify_many": measure(verify_many, repeat, seconds),
        f"hash_{HASH_INPUT_SIZE}B": measure(hash_200, repeat, seconds),
        f"aead_encrypt_{AEAD_INPUT_SIZE}B": measure(encrypt_1k, repeat, seconds),
        f"sign_{THREADS}_threads": measure(_in_threads(sign_on, THREADS), repeat, seconds),
        f"verify_{THREADS}_threads": measure(_in_threads(verify_on, THREADS), repeat, seconds),
    }


def bench_gmalglib(repeat: int, seconds: float) -> dict[str, Any]:
    try:
        gmalglib_sm2 = importlib.import_module("gmalglib.sm2")
    except ImportError:
        return {"skipped": "gmalglib is not importable"}
    gm = suite("gm")
    signer = gmalglib_sm2.SM2()
    private, public = signer.generate_keypair()
    signer = gmalglib_sm2.SM2(sk=private)
    verifier = gmalglib_sm2.SM2(pk=public)
    message = bytes(range(128))
    signature = signer.sign(message)

    # The two must interoperate (same curve, same default user id), or the comparison is moot.
    interop = gm.verify(public, message, signature) and verifier.verify(
        message, gm.sign(private, message)
    )

    def sign(n: int) -> None:
        for _ in range(n):
            signer.sign(message)

    def verify(n: int) -> None:
        for _ in range(n):
            if not verifier.verify(message, signature):
                raise AssertionError("a valid signature failed to verify")

    return {
        "version": importlib.metadata.version("gmalglib"),
        "interoperates_with_gm_suite": bool(interop),
        "sign": measure(sign, repeat, seconds),
        "verify": measure(verify, repeat, seconds),
        f"sign_{THREADS}_threads": measure(_in_threads(lambda _t: sign, THREADS), repeat, seconds),
        f"verify_{THREADS}_threads": measure(
            _in_threads(lambda _t: verify, THREADS), repeat, seconds
        ),
    }


def _versions() -> dict[str, str]:
    versions = {}
    for name in ("cryptography", "pynacl", "tongsuopy", "gmalglib"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _print_table(title: str, results: dict[str, Any]) -> None:
    print(f"\n{title}")
    width = max(len(name) for name in results) + 2
    for name, result in results.items():
        if isinstance(result, dict) and "ops_per_s" in result:
            spread = f"{min(result['samples']):>10,.0f} .. {max(result['samples']):,.0f}"
            print(f"  {name:<{width}}{result['ops_per_s']:>12,.0f} ops/s   (runs: {spread})")
        else:
            print(f"  {name:<{width}}{result}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="where to write JSON")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs per figure (median)")
    parser.add_argument("--seconds", type=float, default=0.3, help="length of one timed run")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.seconds <= 0:
        parser.error("--repeat must be at least 1 and --seconds positive")

    report: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "seconds_per_run": args.seconds,
        "versions": _versions(),
        "suites": {},
    }
    print(f"crypto bench: {args.repeat} runs of ~{args.seconds}s each, median ops/s")
    print(f"python {report['python']} on {report['platform']}, {report['cpu_count']} cores")
    for name in SUITE_NAMES:
        results = bench_suite(suite(name), args.repeat, args.seconds)
        report["suites"][name] = results
        _print_table(f"suite {name}", results)

    report["gmalglib"] = bench_gmalglib(args.repeat, args.seconds)
    if "skipped" in report["gmalglib"]:
        print(f"\ngmalglib: skipped ({report['gmalglib']['skipped']}); the gm suite uses tongsuopy")
    else:
        _print_table("gmalglib SM2 (comparison only; not a dependency)", report["gmalglib"])

    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
