"""The consensus core: a Jolteon-style two-chain HotStuff as a pure state machine.

Bytes and time come in as events; what to send, persist, commit and when to wake up go out
as actions: `Replica.handle(event) -> list[Action]`. Nothing here opens a socket, reads a
clock, draws randomness, touches a disk or imports asyncio (a test checks the imports). The
same core runs inside the node and inside the deterministic simulator (`consortia.sim`).

docs/consensus.md is the specification this package is checked against.
"""
