"""How long a restarting node takes to rebuild leader reputation from its store.

A restarted replica must pick the same leaders as its peers, so it replays the committed
blocks of the running epoch into `LeaderElection` (a truncated replay can disagree: each
block's failed leaders depend on the window before it). This measures that replay (reading
the epoch's blocks from LMDB, decoding them, recording them) for epochs of growing length,
against the alternative the node uses: persisting the election's state with every commit
(its size, the cost of encoding it at each commit, and of decoding and restoring it).

    python benchmarks/restart_bench.py [--blocks 1000,10000,100000] [--runs 3] [--out FILE]

Prints a table and writes JSON (median of --runs per size).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from consortia.consensus.config import Params, genesis_block
from consortia.consensus.leader import LeaderElection
from consortia.consensus.validators import ValidatorSet
from consortia.crypto import suite as get_suite
from consortia.storage import CommitRecord, NodeStore
from consortia.types.consensus import (
    Block,
    BlockHeader,
    EpochConfig,
    QuorumCertificate,
    ReputationState,
    SignerSignature,
    Validator,
)
from consortia.types.encoding import decode, encode
from consortia.types.signing import SigningDomain, block_id

SUITE = get_suite("intl")
CHAIN_ID = "restart-bench"
VALIDATORS = 4


def _config() -> EpochConfig:
    validators = []
    for index in range(VALIDATORS):
        public = SUITE.public_key(SUITE.hash(b"restart-bench-%d" % index))
        validators.append(Validator(SUITE.hash(public), public, 1))
    return EpochConfig(epoch=0, validators=sorted(validators, key=lambda v: v.node_id))


def build(path: Path, blocks: int, config: EpochConfig) -> None:
    """A store with `blocks` committed empty blocks of epoch 0; one round in ten fails."""
    store = NodeStore(path, durable=False, map_size=8 * 1024**3)
    root = genesis_block(SUITE, CHAIN_ID, 1, 0)
    parent_id = block_id(SUITE, root.header)
    store.initialise(state={}, state_root=b"\0" * 32, epoch_config=config, genesis_id=parent_id)
    signature = b"\x01" * 64
    round_ = 0
    for height in range(1, blocks + 1):
        justify = QuorumCertificate(
            epoch=0,
            round=round_,
            block_id=parent_id,
            height=height - 1,
            signatures=[SignerSignature(i, signature) for i in range(3)],
        )
        round_ += 2 if height % 10 == 0 else 1
        header = BlockHeader(
            chain_id=CHAIN_ID,
            protocol_version=1,
            epoch=0,
            round=round_,
            height=height,
            parent_id=parent_id,
            justify=justify,
            author=config.validators[round_ % VALIDATORS].node_id,
            timestamp_ms=height,
            payload_root=b"\0" * 32,
            payload_count=0,
        )
        block = Block(header=header, payload=[])
        parent_id = block_id(SUITE, header)
        store.commit_block(
            block=block,
            block_id=parent_id,
            record=CommitRecord(certificate=justify, proof=justify),
            receipts=[],
            writes={},
            state_root=b"\0" * 32,
            epoch_config=config,
            epoch_root_id=parent_id,
        )
    store.close()


def replay(path: Path, config: EpochConfig) -> tuple[float, float, float, float, int]:
    """(seconds reading the epoch's blocks, seconds recording them, as a restart without a
    snapshot does; seconds encoding the snapshot, as each commit does; seconds decoding and
    restoring it, as a restart does; the snapshot's size in bytes)."""
    store = NodeStore(path)
    height = store.height
    assert height is not None
    started = time.perf_counter()
    blocks = store.blocks_of_epoch(0, height)
    read = time.perf_counter() - started
    validators = ValidatorSet(config, SUITE, CHAIN_ID, domain=SigningDomain(b"\0" * 32))
    election = LeaderElection(validators, Params().reputation_window)
    started = time.perf_counter()
    election.record_blocks(blocks)
    recorded = time.perf_counter() - started
    store.close()
    assert len(blocks) == height
    started = time.perf_counter()
    snapshot = encode(election.state())
    encoded = time.perf_counter() - started
    started = time.perf_counter()
    restored = LeaderElection(validators, Params().reputation_window)
    restored.restore(decode(snapshot, ReputationState))
    restoring = time.perf_counter() - started
    assert restored.state() == election.state()
    return read, recorded, encoded, restoring, len(snapshot)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", default="1000,10000,100000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("restart_bench.json"))
    args = parser.parse_args()
    config = _config()
    rows = []
    print(
        f"{'blocks':>8} {'read ms':>9} {'record ms':>10} {'total ms':>9} {'us/block':>9}"
        f" {'snap B':>7} {'encode us':>10} {'restore us':>11}"
    )
    for size in (int(part) for part in args.blocks.split(",")):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "store"
            build(path, size, config)
            runs = [replay(path, config) for _ in range(args.runs)]
            read = statistics.median(run[0] for run in runs) * 1000
            record = statistics.median(run[1] for run in runs) * 1000
            encode_us = statistics.median(run[2] for run in runs) * 1e6
            restore_us = statistics.median(run[3] for run in runs) * 1e6
            size_bytes = runs[0][4]
            total = read + record
            rows.append(
                {
                    "blocks": size,
                    "read_ms": round(read, 2),
                    "record_ms": round(record, 2),
                    "total_ms": round(total, 2),
                    "us_per_block": round(total * 1000 / size, 2),
                    "snapshot_bytes": size_bytes,
                    "snapshot_encode_us": round(encode_us, 1),
                    "snapshot_restore_us": round(restore_us, 1),
                }
            )
            print(
                f"{size:>8} {read:>9.1f} {record:>10.1f} {total:>9.1f} {total * 1000 / size:>9.2f}"
                f" {size_bytes:>7} {encode_us:>10.1f} {restore_us:>11.1f}"
            )
    args.out.write_text(json.dumps({"runs": args.runs, "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
