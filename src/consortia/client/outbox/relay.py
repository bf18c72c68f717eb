"""The relay: signs the outbox's intents, submits them, follows them to their outcome and
records it in the business database; exactly once, whatever is killed when, and whatever a
node says.

One pass (`Relay.run_once`), against one node throughout:

1. **Sign.** For each account with pending intents: the chain's next nonce (`/v1/nonces`)
   and height, then `OutboxStore.sign_pending` (nonces, signatures, the signed bytes and
   their hash committed in the business database before anything is sent).
2. **Submit and follow.** Every signed intent's stored bytes are sent again
   (`POST /v1/txs`, byte for byte what was stored): `pending` or `duplicate` means it waits
   in the mempool; `stale_nonce` or `expired` means it is in a block or can never be, so the
   relay looks it up (`_look_up`). A refusal that is a property of the bytes alone
   (`REFUSED`: `bad_signature`, `wrong_chain`, ...) is checked against the stored bytes here
   (`ChainChecks.refusal`) and recorded `failed` only if the bytes really deserve it. Any
   other refusal (`mempool_full`, `nonce_taken`, or `unknown_account` from a node behind the
   chain) is tried again next pass; the node unreachable ends the pass, and the pauses grow
   to `backoff_max_s`.

Trusting no node (docs/outbox.md, "Trusting no node"). The node's word decides nothing that
is recorded: an outcome is recorded only from a receipt proven against an execution header
certified by the validators (`ChainChecks.receipt`); a transaction is declared never
executed (and its intent signed again) only when the account's nonce, proven at a certified
height at or past the transaction's expiry height, has not passed the transaction's nonce
(`ChainChecks.account`): a transaction runs only at its account's nonce, which only rises,
and no block after its expiry height may carry it. A failed receipt whose code the engine
gives before spending the nonce (`NONCE_FREE_CODES`) is recorded under the same condition.
An answer that fails a check is logged (`verification_failed`), the pass ends, and the relay
moves to the next node; after `verification_failures_max` such passes in a row it stops
(`RelayVerificationError`), recording nothing. A transaction with no receipt whose nonce the
chain did spend (another signer's transaction, or a receipt hidden) is settled by the block
that spent the nonce (`ChainChecks.absence`: every receipt of it proven); while no node can
prove that, it stays signed (`absence_unproven`, logged, asked again of the next node, less
and less often), and `until_idle` stops with `AbsenceUnprovenError` when only such intents
are left.

Nothing is kept between passes but caches (and the validator sets learnt): every decision is
read from the database and the node again, so a relay killed at any moment (or whose
database connection or node went away) resumes where the database says.
`CONSORTIA_RELAY_CRASH_AT` (tests only: `after_sign`, `after_submit`) kills the process with
SIGKILL at that point of the first pass that reaches it.

Owns the pass and its classification of the node's answers. Must never send bytes other than
those stored for the intent, sign an intent whose previous transaction is not proven never
executed, record an outcome it did not prove, or log a key, a passphrase or a DSN.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Final

import structlog

from consortia.client.light import VerificationError
from consortia.client.outbox.errors import (
    AbsenceUnprovenError,
    OutboxDatabaseUnavailableError,
    RelayVerificationError,
)
from consortia.client.outbox.proofs import ABSENT, ChainChecks, ProvenReceipt
from consortia.client.outbox.settings import (
    PAUSE_MIN_S,
    UNPROVEN_PAUSE_MAX_S,
    UNPROVEN_PAUSE_S,
    WAITING_PAUSE_S,
    RelayCounters,
    RelaySettings,
)
from consortia.client.outbox.store import Decision, OutboxStore, SignedIntent
from consortia.client.sdk import Client, ClientError, Signer

CRASH_ENV: Final = "CONSORTIA_RELAY_CRASH_AT"
CRASH_POINTS: Final = frozenset({"after_sign", "after_submit"})
# Admission answers: waiting in the mempool; in a block or never (look it up); try again.
WAITING: Final = frozenset({"duplicate"})
LOOK_UP: Final = frozenset({"stale_nonce", "expired"})
# Refused for good: properties of the bytes alone, the same on every node at every height.
# Any other refusal (mempool_full, nonce_taken, sender_limit, nonce_too_far, and
# unknown_account or expiry_too_far from a node behind the chain) is sent again next pass;
# if it never gets in, it expires and is found dead.
REFUSED: Final = frozenset({"malformed_transaction", "wrong_chain", "too_large", "bad_signature"})
# Whole-request failures worth retrying (the node away, restarting or overloaded).
UNAVAILABLE: Final = frozenset({"unreachable", "bad_response", "http_error", "timeout"})
# Logged (and noted in last_error) when a transaction's nonce is spent but no receipt proven.
ABSENCE_UNPROVEN: Final = "absence_unproven"


class Relay:
    def __init__(
        self,
        connect: Callable[[], OutboxStore],
        node_urls: Sequence[str],
        signer_for: Callable[[str, Client], Signer | None],
        *,
        checks: ChainChecks,
        accounts: Sequence[str] | None = None,
        settings: RelaySettings | None = None,
        stop: threading.Event | None = None,
        on_pass: Callable[[RelayCounters], None] | None = None,
        client_for: Callable[[str], Client] | None = None,
    ) -> None:
        assert node_urls
        self._connect = connect
        self._urls = list(node_urls)
        self._node = 0
        self._signer_for = signer_for
        self._signers: dict[str, Signer | None] = {}
        self._checks = checks
        self._distrust = False  # move to the next node after this pass
        # tx hash -> (when to look it up again, the last pause, lookups): lookups that proved
        # nothing, asked of each node in turn, then less and less often (a cache).
        self._unproven: dict[str, tuple[float, float, int]] = {}
        self.accounts = None if accounts is None else list(accounts)
        self.settings = settings or RelaySettings()
        self.stop = stop or threading.Event()
        self.counters = RelayCounters()
        self._on_pass = on_pass
        self._client_for = client_for or (lambda url: Client(url, timeout_s=10.0))
        self._store: OutboxStore | None = None
        self._client: Client | None = None
        self._cursor: tuple[str, int] | None = None  # where the last pass's sending stopped
        self._crash_at = os.environ.get(CRASH_ENV, "")
        self.log = structlog.get_logger("consortia.relay")

    # ------------------------------------------------------------------ the loop

    def run(self) -> None:
        """Passes until `stop` is set (or, with `until_idle`, nothing waits)."""
        pause, backoff = PAUSE_MIN_S, PAUSE_MIN_S
        refused_in_a_row = 0
        self.log.info("relay started", nodes=len(self._urls), accounts=self.accounts or "all")
        try:
            while not self.stop.is_set():
                try:
                    busy = self.run_once()
                    backoff = PAUSE_MIN_S
                    refused_in_a_row = 0
                except VerificationError as error:
                    refused_in_a_row += 1
                    self._refused_answer(error, refused_in_a_row)
                    self._next_node()
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.backoff_max_s)
                    continue
                except OutboxDatabaseUnavailableError as error:
                    self.counters.database_retries += 1
                    self.log.warning(
                        "database unavailable; reconnecting",
                        reason=error.message,
                        retry_in_s=round(backoff, 2),
                    )
                    self._drop_store()
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.backoff_max_s)
                    continue
                except ClientError as error:
                    if error.code not in UNAVAILABLE and error.status < 500:
                        raise
                    self.counters.node_retries += 1
                    self.log.warning(
                        "node unavailable; retrying",
                        node=self._urls[self._node],
                        reason=error.code,
                        retry_in_s=round(backoff, 2),
                    )
                    self._next_node()
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.backoff_max_s)
                    continue
                if self._on_pass is not None:
                    self._on_pass(self.counters)
                waiting = self.counters.waiting
                if self.settings.until_idle and self._idle(waiting):
                    break
                # Short pauses while something changes, a little longer while transactions
                # wait for their block (each pass sends them again), long ones when idle.
                ceiling = WAITING_PAUSE_S if waiting["signed"] else self.settings.pause_max_s
                pause = PAUSE_MIN_S if busy else min(pause * 2, ceiling)
                self.stop.wait(pause)
        finally:
            self._drop_store()
            if self._client is not None:
                self._client.close()
            c = self.counters
            self.log.info(
                "relay stopped",
                signed=c.signed,
                committed=c.committed,
                failed=c.failed,
                resigned=c.resigned,
            )

    def _idle(self, waiting: dict[str, int]) -> bool:
        """Whether nothing waits; AbsenceUnprovenError when only unproven lookups do (no
        pass of this process can settle them soon)."""
        if waiting["pending"] + waiting["signed"] == 0:
            return True
        asked_all = [v for v in self._unproven.values() if v[2] >= len(self._urls)]
        if waiting["pending"] == 0 and waiting["signed"] <= len(asked_all):
            raise AbsenceUnprovenError(
                f"{waiting['signed']} signed intent(s) wait on a transaction whose nonce the"
                " chain spent and whose receipt no node proved (absence_unproven;"
                " docs/outbox.md, Trusting no node)"
            )
        return False

    def run_once(self) -> bool:
        """One pass; whether it changed anything. VerificationError when an answer of the
        node fails a check (nothing is recorded from it)."""
        store, client = self._open_store(), self._open_client()
        signed = self._sign(store, client)
        decided = self._follow(store, client)
        self.counters.waiting = store.counts()
        if self._distrust:  # a lookup proved nothing here: ask another node next pass
            self._distrust = False
            self._next_node()
        return signed + decided > 0

    def _refused_answer(self, error: VerificationError, in_a_row: int) -> None:
        """Log an answer that failed verification; stop after too many passes in a row."""
        self.counters.verification_failures += 1
        node = self._urls[self._node]
        self.log.error(
            "node answer failed verification; nothing recorded, moving to the next node",
            code=error.code,
            check=error.what,
            reason=error.message,
            node=node,
            in_a_row=in_a_row,
        )
        if in_a_row >= self.settings.verification_failures_max:
            raise RelayVerificationError(
                f"{in_a_row} passes in a row ended by an answer that failed verification"
                f" (last from {node}: {error.what}: {error.message}); nothing was recorded"
                " from them"
            )

    # ------------------------------------------------------------------ signing

    def _sign(self, store: OutboxStore, client: Client) -> int:
        accounts = store.accounts_with_pending(self.accounts)
        if not accounts:
            return 0
        nonces = client.nonces(accounts)
        # The node's height sets expiry heights only (a wrong one costs time, never safety);
        # never below a height the validators certified to this relay.
        height = max(int(client.status()["height"]), self._checks.certified_height)
        total = 0
        for account in accounts:
            chain_next = nonces.get(account)
            if chain_next is None:
                self._no_account(store, client, account)
                continue
            signer = self._signer(account, client)
            if signer is None:
                failed = store.fail_pending(
                    account, "no_key", f"this relay holds no key for {account!r}"
                )
                self.counters.failed += failed
                self.log.warning("intents failed", account=account, code="no_key", intents=failed)
                continue
            done = store.sign_pending(
                account,
                int(chain_next),
                height + self.settings.expiry_blocks,
                signer.signed,
                batch_max=self.settings.batch_max,
                in_flight_max=self.settings.in_flight_max,
            )
            if done:
                total += len(done)
                self.log.info(
                    "intents signed",
                    account=account,
                    intents=len(done),
                    expiry_height=height + self.settings.expiry_blocks,
                )
        self.counters.signed += total
        if total:
            self._crash("after_sign")
        return total

    def _no_account(self, store: OutboxStore, client: Client, account: str) -> int:
        """The node says `account` does not exist: its pending intents fail
        `unknown_account` only once its absence is proven at a certified height no lower
        than any this relay saw (a node behind, or lying, fails nothing)."""
        floor = self._checks.certified_height
        proven = self._checks.account(client, account)
        if proven is None:
            return 0  # nothing certified to prove it at yet: next pass
        if proven.nonce is not None:
            raise VerificationError(
                "nonces", f"the node says there is no account {account!r}; a proof says there is"
            )
        if proven.height < floor:
            self.log.warning(
                "account absent at an old height; waiting",
                account=account,
                height=proven.height,
                certified_height=floor,
            )
            return 0
        message = f"no account {account!r} at certified height {proven.height}"
        failed = store.fail_pending(account, "unknown_account", message)
        self.counters.failed += failed
        self.log.warning("intents failed", account=account, code="unknown_account", intents=failed)
        return failed

    def _signer(self, account: str, client: Client) -> Signer | None:
        if account not in self._signers:
            self._signers[account] = self._signer_for(account, client)
        return self._signers[account]

    # ------------------------------------------------------------------ following

    def _follow(self, store: OutboxStore, client: Client) -> int:
        intents = store.signed(self.accounts, self.settings.batch_max, after=self._cursor)
        # Round robin over many accounts: the next pass starts after the last one sent, and
        # from the start again once a pass reached the end.
        full = len(intents) == self.settings.batch_max
        if not full and self._cursor is None:  # every signed intent is here: forget the rest
            live = {intent.tx_hash for intent in intents}
            self._unproven = {h: v for h, v in self._unproven.items() if h in live}
        self._cursor = (intents[-1].account, intents[-1].nonce) if full else None
        if not intents:
            return 0
        results = client.submit_many([intent.signed_tx for intent in intents])
        self.counters.submitted += len(intents)
        self._crash("after_submit")
        look_up: list[SignedIntent] = []
        retry: dict[str, list[int]] = {}
        decided = 0
        for intent, result in zip(intents, results, strict=True):
            code = str(result.get("error", {}).get("code", "")) if "error" in result else ""
            if not code or code in WAITING:
                continue
            if code in LOOK_UP:
                look_up.append(intent)
            elif code in REFUSED:
                decided += self._refused(store, intent, code)
            else:
                retry.setdefault(code, []).append(intent.id)
        for code, ids in retry.items():
            store.note_submitted(ids, code)
        now = time.monotonic()
        for intent in look_up:
            if self._unproven.get(intent.tx_hash, (0.0, 0.0, 0))[0] <= now:
                decided += self._look_up(store, client, intent)
        return decided

    def _refused(self, store: OutboxStore, intent: SignedIntent, code: str) -> int:
        """A refusal for good, recorded only with the code the stored bytes deserve, checked
        here: bytes well formed, for this chain and well signed refused so are a lie."""
        deserved = self._checks.refusal(intent.signed_tx)
        if deserved is None:
            raise VerificationError(
                "refusal",
                f"the node refused {intent.tx_hash} as {code}, but its bytes are well formed,"
                " for this chain and well signed",
            )
        decision = Decision("failed", deserved[0], deserved[1], False)
        return self._decide(store, intent, decision)

    def _look_up(self, store: OutboxStore, client: Client, intent: SignedIntent) -> int:
        """The node says the transaction is in a block or can never be: record its proven
        outcome, or sign the intent again once it is proven never executed."""
        proven = self._checks.receipt(client, intent.tx_hash)
        if isinstance(proven, str):  # proofs.WAITING: not provable yet
            return 0
        if isinstance(proven, ProvenReceipt) and proven.final:
            return self._decide(store, intent, proven.decision(nonce_spent=True))
        # No receipt, or a failure given before spending the nonce (the same transaction may
        # still run later, or have run in another block): only the account's proven nonce,
        # at a certified height at or past the expiry height, can settle it.
        account = self._checks.account(client, intent.account)
        if account is None:
            return 0  # nothing certified to prove it at yet: next pass
        if account.nonce is not None and account.nonce > intent.nonce:
            # Its nonce is spent: by this transaction (a receipt hidden) or another one. The
            # block that spent it, every receipt proven, says which; if another, this one
            # can never run, expired or not.
            found = self._checks.absence(
                client, intent.account, intent.nonce, intent.tx_hash, account.height
            )
            if isinstance(found, ProvenReceipt):
                return self._decide(store, intent, found.decision(nonce_spent=True))
            if found != ABSENT:
                self._note_unproven(store, intent, account.nonce, account.height)
                return 0
        elif account.height < intent.expiry_height:
            return 0  # it may still be carried: wait
        self._unproven.pop(intent.tx_hash, None)
        if isinstance(proven, ProvenReceipt):
            return self._decide(store, intent, proven.decision(nonce_spent=False))
        reason = (
            f"expired at height {intent.expiry_height}, never executed (the account's nonce"
            f" is {account.nonce or 0} at certified height {account.height})"
            if account.nonce is None or account.nonce <= intent.nonce
            else f"nonce {intent.nonce} spent by another transaction (proven: the block that"
            " spent it does not hold this one)"
        )
        state = store.release(intent, reason, self.settings.signings_max)
        if state == "pending":
            self.counters.resigned += 1
            self.log.warning(
                "transaction never executed; signing again",
                business_key=intent.business_key,
                tx_hash=intent.tx_hash,
                reason=reason,
            )
        elif state == "failed":
            self.counters.failed += 1
            self.log.warning(
                "intent failed",
                business_key=intent.business_key,
                code="relay_gave_up",
                reason=reason,
            )
        return 1 if state else 0

    def _note_unproven(
        self, store: OutboxStore, intent: SignedIntent, nonce: int, height: int
    ) -> None:
        """The transaction's nonce is spent and no node proved whether by it: neither recorded
        nor signed again; asked again of the next node, after a pause that doubles."""
        self.counters.unproven += 1
        self._distrust = True
        _, pause, asked = self._unproven.get(intent.tx_hash, (0.0, UNPROVEN_PAUSE_S / 2, 0))
        asked += 1
        if asked >= len(self._urls):  # every node asked once: then less and less often
            pause = min(pause * 2, UNPROVEN_PAUSE_MAX_S)
            self._unproven[intent.tx_hash] = (time.monotonic() + pause, pause, asked)
        else:
            self._unproven[intent.tx_hash] = (0.0, pause, asked)
        store.note_submitted([intent.id], ABSENCE_UNPROVEN)
        self.log.error(
            "transaction's nonce spent, and neither its receipt nor its absence proven;"
            " not recorded, not signed again",
            code=ABSENCE_UNPROVEN,
            business_key=intent.business_key,
            tx_hash=intent.tx_hash,
            nonce=intent.nonce,
            account_nonce=nonce,
            certified_height=height,
            node=self._urls[self._node],
        )

    def _decide(self, store: OutboxStore, intent: SignedIntent, decision: Decision) -> int:
        if not store.decide(intent, decision):
            return 0
        if decision.state == "committed":
            self.counters.committed += 1
            self.log.info(
                "intent committed",
                business_key=intent.business_key,
                tx_hash=intent.tx_hash,
                height=decision.height,
            )
        else:
            self.counters.failed += 1
            self.log.warning(
                "intent failed",
                business_key=intent.business_key,
                tx_hash=intent.tx_hash,
                code=decision.code,
                height=decision.height,
            )
        return 1

    # ------------------------------------------------------------------ plumbing

    def _crash(self, point: str) -> None:
        if self._crash_at == point:
            self.log.warning("crashing on purpose", point=point)
            os.kill(os.getpid(), signal.SIGKILL)

    def _open_store(self) -> OutboxStore:
        if self._store is None:
            store = self._connect()
            try:
                store.prepare()
            except BaseException:
                store.close()
                raise
            self._store = store
        return self._store

    def _drop_store(self) -> None:
        if self._store is not None:
            try:
                self._store.close()
            finally:
                self._store = None

    def _open_client(self) -> Client:
        if self._client is None:
            self._client = self._checks.attach(self._client_for(self._urls[self._node]))
        return self._client

    def _next_node(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        self._node = (self._node + 1) % len(self._urls)
