"""A crash between the new epoch's safety state and the record of the block that ended the old
epoch: the restarted replica must still catch up into the new epoch.

When a commit ends an epoch, the replica emits `Commit`, `EnterEpoch` and a `Persist` of the
new epoch's fresh safety state. The node's driver writes that state at once (fsync) but
executes and records the committed blocks a moment later (`Driver._apply_commits`, scheduled
with `call_soon`). A node killed in between restarts from a store whose tip is still in the
old epoch, with a safety state of the new one. It must refuse to sign in the old epoch (it
did, and its old state is gone), learn from a peer that the epoch ended, commit the ending
block and go on in the new epoch, never halting.
"""

from __future__ import annotations

from consortia.consensus.config import root_qc_for
from consortia.consensus.events import Halt, MessageReceived, Send, Start
from consortia.sim import Scenario
from consortia.sim.harness import Simulation
from consortia.types.consensus import Block, BlockRequest, BlockResponse, SafetyState


def test_a_restart_with_the_next_epochs_safety_state_catches_up_into_that_epoch() -> None:
    """Setup: a finished run whose epoch 0 ends at height 4; one honest slot's disk is put
    back to the moment between the new epoch's Persist and the ending block's record (tip
    just below the ending block, epoch 0's config, epoch 1's fresh safety state). Its
    restarted replica gets a peer's proof that epoch 0 ended and the blocks it asks for.
    Test: no exception, no halt; it ends in epoch 1."""
    simulation = Simulation(Scenario(nodes=4, add_validator_at=4, heights=10, seed=0))
    assert simulation.run().ok
    slot = simulation.slots[0]
    peer = next(s for s in simulation.slots[1:] if s.honest and s.disk.epoch_proofs)
    assert slot.honest
    committed = list(slot.disk.committed)
    at = next(i for i, (_, b) in enumerate(committed) if b.header.next_epoch is not None)
    ending = committed[at][1]
    disk = slot.disk
    disk.committed = committed[:at]
    disk.heights = {new_id: height + 1 for height, (new_id, _) in enumerate(disk.committed)}
    disk.certificate = ending.header.justify  # certifies the block below the ending one
    disk.proof = disk.reputation = None
    disk.voted = {}
    disk.epoch_config = simulation.epoch_config
    disk.epoch_root_id = simulation.genesis_id
    disk.safety = SafetyState(
        epoch=1, highest_vote_round=0, highest_qc=root_qc_for(simulation.suite, ending, 1)
    )
    replica = simulation.replicas.make(slot)
    assert (replica.epoch, replica.safety.state.epoch) == (0, 1)
    now_ms = 10**7
    assert not [a for a in replica.handle(Start(now_ms)) if isinstance(a, Halt)]
    known: dict[bytes, Block] = dict(peer.disk.committed)
    actions = replica.handle(MessageReceived(now_ms, peer.node_id, peer.disk.epoch_proofs[0]))
    for step in range(1, 20):
        assert not [a for a in actions if isinstance(a, Halt)]
        requests = [
            a.message
            for a in actions
            if isinstance(a, Send) and isinstance(a.message, BlockRequest)
        ]
        if not requests:
            break
        request = requests[0]
        chain: list[Block] = []
        block = known.get(request.block_id)
        while block is not None and len(chain) < request.count:
            chain.append(block)
            block = known.get(block.header.parent_id)
        response = BlockResponse(request.block_id, chain)
        actions = replica.handle(MessageReceived(now_ms + step, peer.node_id, response))
    assert replica.halted is None
    assert replica.epoch == 1
    assert replica.safety.state.epoch == 1
