"""The mempool: signed transactions waiting for a block, admitted, bounded, ordered, batched.

A pure module, like the cores: no socket, clock, disk or randomness; the committed state it
needs (an account's next nonce, the current height) comes in as arguments.
"""

from consortia.mempool.pool import Admission, Mempool, MempoolLimits

__all__ = ["Admission", "Mempool", "MempoolLimits"]
