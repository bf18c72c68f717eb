"""`consortia init`: a whole test consortium on one machine, made by the same steps a
consortium of separate institutions takes.

Creation happens in two steps. `plan_consortium` checks every argument and chooses addresses
without writing anything; `build_consortium` then makes, inside one hidden staging directory
that is renamed into place at the end (staging.py), exactly what the separate institutions
would make: the offline CA's folder (authority.py; or it uses an existing CA folder), for each
bank an institution folder with its member's account key and its node's keys and requests
(institution.py), a certificate for each node from the CA, the genesis from the requests and
certificates (assembly.py), and each node's config (joining.py).

A local demo network (`consortia cluster up`) also asks for funded customer accounts
(`demo_accounts`: alice, bob, ...): each one's key goes to `DIR/accounts/NAME.key` under the
passphrase of the member that sponsors it (members take turns), and the genesis gives it
DEMO_ACCOUNT_BALANCE after the members' treasuries. It may also ask for benchmark accounts
(`bench_accounts`: bench-000000, ...), whose keys derive from one master key sealed under the
first member's passphrase (bench_accounts.py).

Every holder has its own passphrase: the CA, each node and each member (custody.py). Only in
demo custody does one passphrase protect everything, and then it is written to
`.demo-passphrase` when the caller asks: the one documented exception to keeping secrets out
of files, labelled as such wherever it appears.

This module must never print, log or write unencrypted a private key or a passphrase (the demo
passphrase file being the exception above).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import re
import secrets
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

from consortia.crypto import suite
from consortia.errors import AlreadyExistsError, InvalidArgumentError
from consortia.identity import assembly, layout
from consortia.identity.addresses import Placement, local_placements, parse_hosts
from consortia.identity.assembly import (
    GatheredNode,
    assemble_genesis,
    gathered_of,
)
from consortia.identity.authority import Authority, create_authority, issue
from consortia.identity.bench_accounts import check_count as check_bench_count
from consortia.identity.bench_accounts import create_bench_accounts
from consortia.identity.certificates import certificate_pem, fingerprint, permitted_names
from consortia.identity.custody import CA_HOLDER, Holder, Passphrases
from consortia.identity.files import make_private_dir, write_private_file, write_public_file
from consortia.identity.genesis import genesis_json, parse_genesis
from consortia.identity.institution import check_name, generate_member, generate_node
from consortia.identity.joining import configure_node
from consortia.identity.keystore import DEFAULT_ARGON2, Argon2Cost, new_keypair, seal_key
from consortia.identity.passphrase import (
    PASSPHRASE_ENV,
    check_new_passphrase,
    obtain_passphrase,
)
from consortia.identity.requests import (
    MemberRequest,
    load_member_request,
    load_node_request,
)
from consortia.identity.staging import staged_directory
from consortia.types.genesis import GenesisAccount
from consortia.types.primitives import CHAIN_ID_LENGTH_MAX, CHAIN_ID_PATTERN, CURRENCY_DEFAULT

NODES_MAX: Final = assembly.NODES_MAX
BFT_NODES_MIN: Final = assembly.BFT_NODES_MIN
REGULATOR: Final = "regulator"
DEMO_ACCOUNT_BALANCE: Final = 100_000_000  # minor units (fen): 1,000,000 CNY per demo account
DEMO_ACCOUNTS_MAX: Final = 64
_CHAIN_ID: Final = re.compile(CHAIN_ID_PATTERN)

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class NodePlan:
    name: str
    member: str
    placement: Placement

    @property
    def node_holder(self) -> Holder:
        return Holder("node", self.name)

    @property
    def member_holder(self) -> Holder:
        return Holder("member", self.member)


@dataclasses.dataclass(frozen=True)
class AccountPlan:
    """A funded demo account: id `name`, key in DIR/accounts/NAME.key, sponsored by `sponsor`
    (whose passphrase protects the key)."""

    name: str
    sponsor: str
    balance: int = DEMO_ACCOUNT_BALANCE

    @property
    def holder(self) -> Holder:
        return Holder("member", self.sponsor)


@dataclasses.dataclass(frozen=True)
class ConsortiumPlan:
    out_dir: Path
    suite: str
    chain_id: str
    nodes: tuple[NodePlan, ...]
    accounts: tuple[AccountPlan, ...] = ()
    bench_accounts: int = 0  # benchmark accounts (bench_accounts.py), for a local network

    @property
    def step_count(self) -> int:
        """How many times `build_consortium` calls its progress callback."""
        return 3 * len(self.nodes) + 2 + len(self.accounts) + (1 if self.bench_accounts else 0)

    def holders(self, *, with_ca: bool) -> list[Holder]:
        """Everyone who gets a passphrase: the CA (unless an existing CA is used), then each
        node and each member."""
        found = [CA_HOLDER] if with_ca else []
        for node in self.nodes:
            found += [node.node_holder, node.member_holder]
        return found


@dataclasses.dataclass(frozen=True)
class NodeSummary:
    name: str
    member: str
    node_id: bytes
    address: str
    api_listen: str
    certificate_fingerprint: str


@dataclasses.dataclass(frozen=True)
class ConsortiumSummary:
    out_dir: Path
    chain_id: str
    suite: str
    genesis_hash: bytes
    nodes: tuple[NodeSummary, ...]
    keys_decrypted: bool

    @property
    def faults_tolerated(self) -> int:
        return (len(self.nodes) - 1) // 3


def plan_consortium(
    out_dir: Path,
    *,
    nodes: int,
    suite_name: str,
    hosts: str | None = None,
    chain_id: str | None = None,
    demo_accounts: Sequence[str] = (),
    bench_accounts: int = 0,
) -> ConsortiumPlan:
    """Check the arguments of `consortia init` and choose addresses; writes nothing.
    `demo_accounts` names funded customer accounts for a local demo network, and
    `bench_accounts` asks for that many benchmark accounts (bench_accounts.py)."""
    check_node_count(nodes)
    if bench_accounts:
        check_bench_count(bench_accounts)
    suite(suite_name)  # UnknownSuiteError for an unknown name
    chain = check_chain_id(chain_id)
    out = Path(os.path.abspath(out_dir))
    check_out_dir(out)
    placements = local_placements(nodes) if hosts is None else parse_hosts(hosts, nodes)
    node_plans = tuple(
        NodePlan(layout.node_dir_name(i), layout.member_name(i), placement)
        for i, placement in enumerate(placements)
    )
    accounts = _plan_accounts(demo_accounts, [node.member for node in node_plans])
    return ConsortiumPlan(out, suite_name, chain, node_plans, accounts, bench_accounts)


def _plan_accounts(names: Sequence[str], members: Sequence[str]) -> tuple[AccountPlan, ...]:
    """One AccountPlan per name, sponsored by the members in turn."""
    if len(names) > DEMO_ACCOUNTS_MAX:
        raise InvalidArgumentError(f"at most {DEMO_ACCOUNTS_MAX} demo accounts")
    for name in names:
        check_name(name, "demo account")
        if "." in name or name in members:
            raise InvalidArgumentError(
                f"demo account {name!r}: a name without '.' that is no member's name"
            )
    if len(set(names)) != len(names):
        raise InvalidArgumentError("demo account names must differ")
    return tuple(
        AccountPlan(name, members[index % len(members)]) for index, name in enumerate(names)
    )


def check_node_count(nodes: int) -> None:
    if not 1 <= nodes <= NODES_MAX:
        raise InvalidArgumentError(f"--nodes must be 1 to {NODES_MAX}, got {nodes}")


def check_out_dir(out_dir: Path) -> None:
    """AlreadyExistsError unless `out_dir` is absent or an empty directory in an existing one."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise AlreadyExistsError(f"{out_dir} already exists and is not a directory")
    if out_dir.is_dir() and any(out_dir.iterdir()):
        raise AlreadyExistsError(f"{out_dir} already exists and is not empty; refusing to touch it")
    if not out_dir.parent.is_dir():
        raise InvalidArgumentError(f"the parent directory {out_dir.parent} does not exist")


def new_demo_passphrase() -> str:
    """A random passphrase for a demo consortium (32 URL-safe characters)."""
    return secrets.token_urlsafe(24)


def demo_custody_passphrase(passphrase_file: Path | None = None) -> tuple[str, str | None]:
    """The one passphrase of a consortium in demo custody, and what to write next to its keys.

    From `passphrase_file` or the environment when either gives one (then nothing is
    written: the operator holds it); otherwise a new random one, which is also the second
    value, for `build_consortium` to write (mode 0600) beside the keys."""
    if passphrase_file is not None or os.environ.get(PASSPHRASE_ENV):
        return obtain_passphrase(passphrase_file, creating=True), None
    passphrase = new_demo_passphrase()
    return passphrase, passphrase


def collect_passphrases(
    plan: ConsortiumPlan, source: Passphrases, *, with_ca: bool
) -> dict[Holder, str]:
    """Every holder's new passphrase, asked for before anything is written."""
    return {
        holder: source.passphrase(holder, creating=True) for holder in plan.holders(with_ca=with_ca)
    }


def build_consortium(
    plan: ConsortiumPlan,
    passphrases: Mapping[Holder, str],
    *,
    authority: Authority | None = None,
    demo_passphrase: str | None = None,
    cost: Argon2Cost = DEFAULT_ARGON2,
    progress: Progress | None = None,
) -> ConsortiumSummary:
    """Write the planned consortium to `plan.out_dir`, all at once or not at all.

    With `authority` (an opened CA folder elsewhere) its CA issues the certificates; without,
    a new CA is made in `DIR/ca`. With `demo_passphrase`, it is written to `.demo-passphrase`.
    """
    missing = [h.label for h in plan.holders(with_ca=authority is None) if h not in passphrases]
    assert not missing, f"no passphrase for {missing}"
    for passphrase in passphrases.values():
        check_new_passphrase(passphrase)
    check_out_dir(plan.out_dir)
    with staged_directory(plan.out_dir) as root:
        builder = _Builder(root, plan, passphrases, cost, progress or (lambda _step: None))
        summary = builder.build(authority)
        if demo_passphrase is not None:
            data = demo_passphrase.encode("utf-8") + b"\n"
            write_private_file(root / layout.DEMO_PASSPHRASE_FILE, data)
    return dataclasses.replace(summary, out_dir=plan.out_dir)


def check_chain_id(chain_id: str | None) -> str:
    """`chain_id` if it is a valid chain id; a random `consortia-XXXXXXXX` for None."""
    if chain_id is None:
        return f"consortia-{secrets.token_hex(4)}"
    if len(chain_id) > CHAIN_ID_LENGTH_MAX or not _CHAIN_ID.match(chain_id):
        raise InvalidArgumentError(
            f"--chain-id {chain_id!r}: use 1 to {CHAIN_ID_LENGTH_MAX} of a-z, 0-9, '.' and '-',"
            " starting with a letter or digit"
        )
    return chain_id


class _Builder:
    """Makes one consortium inside a staging directory, step by step."""

    def __init__(
        self,
        root: Path,
        plan: ConsortiumPlan,
        passphrases: Mapping[Holder, str],
        cost: Argon2Cost,
        progress: Progress,
    ) -> None:
        self.root = root
        self.plan = plan
        self.passphrases = passphrases
        self.cost = cost
        self.progress = progress
        self.now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)

    def build(self, authority: Authority | None) -> ConsortiumSummary:
        ca = authority or self._make_ca()
        members: list[MemberRequest] = []
        nodes: list[GatheredNode] = []
        for node in self.plan.nodes:
            member, gathered = self._make_institution(node, ca)
            members.append(member)
            nodes.append(gathered)
        accounts = [self._make_account(account) for account in self.plan.accounts]
        if self.plan.bench_accounts:
            self.progress(f"{self.plan.bench_accounts} benchmark accounts: master key")
            sponsor = self.plan.nodes[0].member_holder
            accounts += create_bench_accounts(
                self.root,
                suite_name=self.plan.suite,
                count=self.plan.bench_accounts,
                sponsors=[node.member for node in self.plan.nodes],
                passphrase=self.passphrases[sponsor],
                cost=self.cost,
            )
        self.progress("genesis and node configs")
        genesis = assemble_genesis(
            gathered_of(members, nodes),
            chain_id=self.plan.chain_id,
            ca_certificate=ca.certificate,
            regulator=REGULATOR,
            now=self.now,
            extra_accounts=accounts,
        )
        document = genesis_json(genesis)
        _parsed, digest = parse_genesis(document)  # the exact bytes every node will check
        write_public_file(self.root / layout.GENESIS_FILE, document)
        write_public_file(self.root / layout.CA_CERTIFICATE_FILE, certificate_pem(ca.certificate))
        summaries = tuple(
            self._configure(node, gathered, document, digest, ca)
            for node, gathered in zip(self.plan.nodes, nodes, strict=True)
        )
        return ConsortiumSummary(
            self.plan.out_dir, self.plan.chain_id, self.plan.suite, digest, summaries, True
        )

    def _make_ca(self) -> Authority:
        self.progress("consortium CA key")
        ca_dir = self.root / layout.CA_DIR
        make_private_dir(ca_dir)
        hosts = sorted({node.placement.host for node in self.plan.nodes})
        return create_authority(
            ca_dir,
            chain_id=self.plan.chain_id,
            permitted=permitted_names(hosts),
            passphrase=self.passphrases[CA_HOLDER],
            now=self.now,
            cost=self.cost,
        )

    def _make_institution(
        self, node: NodePlan, ca: Authority
    ) -> tuple[MemberRequest, GatheredNode]:
        institution = self.root / node.member
        self.progress(f"{node.member}: account key")
        member = generate_member(
            institution,
            member=node.member,
            suite_name=self.plan.suite,
            passphrase=self.passphrases[node.member_holder],
            cost=self.cost,
        )
        self.progress(f"{node.name}: consensus and TLS keys")
        generated = generate_node(
            institution,
            member=node.member,
            node=node.name,
            address=node.placement.address,
            suite_name=self.plan.suite,
            passphrase=self.passphrases[node.node_holder],
            cost=self.cost,
        )
        self.progress(f"{node.name}: TLS certificate")
        request = load_node_request(generated.request_path)
        certificate = issue(ca, request, self.now)
        return load_member_request(member.request_path), GatheredNode(request, certificate)

    def _make_account(self, account: AccountPlan) -> GenesisAccount:
        """A demo account's key, sealed under its sponsor's passphrase, and its genesis entry."""
        self.progress(f"account {account.name}: key")
        accounts_dir = self.root / layout.ACCOUNTS_DIR
        if not accounts_dir.is_dir():
            make_private_dir(accounts_dir)
        private_key, public_key = new_keypair(self.plan.suite, "account")
        sealed = seal_key(
            self.plan.suite,
            "account",
            private_key,
            self.passphrases[account.holder],
            cost=self.cost,
        )
        write_private_file(self.root / layout.account_key_file(account.name), sealed)
        return GenesisAccount(
            id=account.name,
            sponsor=account.sponsor,
            public_key=public_key.hex(),
            currency=CURRENCY_DEFAULT,
            balance=account.balance,
        )

    def _configure(
        self,
        node: NodePlan,
        gathered: GatheredNode,
        document: bytes,
        digest: bytes,
        ca: Authority,
    ) -> NodeSummary:
        joined = configure_node(
            self.root / node.member / node.name,
            genesis_document=document,
            expected_hash=digest,
            ca_certificate=ca.certificate,
            certificate=gathered.certificate,
            now=self.now,
            placement=node.placement,
        )
        return NodeSummary(
            name=joined.name,
            member=joined.member,
            node_id=joined.node_id,
            address=joined.address,
            api_listen=joined.api_listen,
            certificate_fingerprint=fingerprint(gathered.certificate),
        )
