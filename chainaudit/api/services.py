"""What the API's requests share: settings, the log (one reader per thread, one group
writer), the key store, the chain endpoint, the metrics, and the background work.

Background work is of two sorts. **Per process** (every worker of ``chainaudit serve
--workers N``): the group writer and the read audit, which write only what this process's
requests bring, and in-memory state read from the database (authentication cache, escrow
event cache). **Leader only** (one process at a time, elected through the database,
:mod:`chainaudit.service.leader`): the anchoring service and the escrow indexer, which write records
and send transactions under a fencing token, checkpoint signing (which may call witnesses)
and the record index follower (a derived table every request can also catch up).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from eth_account.signers.local import LocalAccount
from web3 import Web3

from chainaudit.api.budget import WorkBudget
from chainaudit.api.readaudit import ReadAudit
from chainaudit.api.writer import GroupWriter
from chainaudit.app import roles
from chainaudit.app.context import anchorer_from, chain_from, cosigner_from, rules_path
from chainaudit.app.deploy import contract_address
from chainaudit.app.logkey import log_signer
from chainaudit.app.metrics import ApiMetrics
from chainaudit.app.privacy import at_rest_from
from chainaudit.app.settings import Settings
from chainaudit.chain.anchor_abi import AUDIT_ANCHOR_ABI
from chainaudit.chain.chain import Chain, deployment_block, load_account
from chainaudit.chain.devnet import derive_accounts
from chainaudit.chain.devnet import load_settings as load_devnet_settings
from chainaudit.chain.escrow import EscrowClient
from chainaudit.chain.toolchain import project_root
from chainaudit.core import datapolicy, note
from chainaudit.core.datapolicy import DataPolicy
from chainaudit.core.errors import ChainauditError, ChainUnavailableError, ConfigError
from chainaudit.log.checkpointing import CheckpointSigner
from chainaudit.log.record_index import RecordIndex
from chainaudit.log.store import DB_NAME, Log
from chainaudit.risk import GuardedEscrow, RiskGate
from chainaudit.risk.clearance import ClearanceSigner
from chainaudit.risk.ledger import EventCache
from chainaudit.service.anchoring import AnchorBook, Anchorer
from chainaudit.service.indexer import Indexer, deals_of
from chainaudit.service.keys import ApiKey, KeyStore
from chainaudit.service.leader import ANCHOR_SIGNAL, DatabaseLease, Elector, Fence, open_lease

__all__ = ["Services"]

logger = logging.getLogger(__name__)

AUTH_CACHE_SECONDS = 5.0


class Services:
    """Built once per app from :class:`Settings`; started and stopped by the app's lifespan."""

    def __init__(self, settings: Settings, *, run_anchorer: bool = True) -> None:
        self.settings = settings
        self.log_signer: note.Signer = log_signer(settings)
        """The log's checkpoint key: production refuses to start without one (ConfigError)."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path: Path = settings.data_dir / DB_NAME
        self.kinds = frozenset(settings.record_kinds)
        self.policy: DataPolicy = datapolicy.load(settings.data_policy_file)
        """The data policy: personal fields (masked), allowed fields (checked on append)."""
        self.at_rest = at_rest_from(settings)
        """The master key and the kinds sealed at rest (:mod:`chainaudit.log.datakeys`)."""
        self._open_log().close()  # create the schema before any reader
        self.metrics = ApiMetrics()
        self.writer = GroupWriter(
            self.log_path,
            self.kinds,
            self.at_rest,
            self.metrics.appended,
            database_url=settings.log_database_url,
        )
        self.reads = ReadAudit(
            self.writer,
            max_reads=settings.read_audit_batch,
            max_seconds=settings.read_audit_seconds,
        )
        self.keys = KeyStore(self.log_path, database_url=settings.log_database_url)
        self.record_index = RecordIndex(self.log_path, database_url=settings.log_database_url)
        """The log's records by kind, actor, time and party (followed by a thread)."""
        self.budget = WorkBudget(settings.work_budget_per_minute)
        self.events = EventCache()
        """Every vault's live escrow events, read incrementally (statements)."""
        self.chain: Chain = chain_from(settings)
        self.run_anchorer = run_anchorer
        self.anchorer: Anchorer | None = None
        """The anchoring service, while this process leads and it runs here."""
        self.anchoring_problem: str | None = "not run by this service"
        """Why the anchoring service cannot run (``None``: it can)."""
        self._anchor_contract: str | None = None
        self.lease: DatabaseLease | None = None
        self.elector: Elector | None = None
        """The election of the process that runs the background work (:meth:`_lead`)."""
        self._leader_stop = threading.Event()
        self._leader_threads: list[threading.Thread] = []
        self._stop = threading.Event()
        self._local = threading.local()
        self._chain_id: int | None = None
        self.started = time.time()
        self._auth_cache: dict[str, tuple[ApiKey, float]] = {}
        self.escrow: EscrowClient | None = None
        self.devnet_token: str | None = None
        self.indexer: Indexer | None = None
        self._checkpoints: CheckpointSigner | None = None
        self._devnet_keys: dict[str, str] | None = None
        self._guarded: GuardedEscrow | None = None
        self._decimals: dict[str, int] = {}

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Start the per-process work (the group writer, the read audit) and the election:
        the leader-only work (:meth:`_lead`) starts once this process holds the lease
        (:mod:`chainaudit.service.leader`; a lone process holds it from its first moment)."""
        self.writer.start()
        self.reads.start()
        self._connect_escrow()
        if self.run_anchorer:
            self._check_anchoring()
        self.lease = open_lease(self.log_path, database_url=self.settings.log_database_url)
        self.elector = Elector(
            self.lease, on_elected=self._lead, on_deposed=self._follow, on_duty=self._duties
        )
        self.elector.start()

    @property
    def is_leader(self) -> bool:
        """Whether this process runs the leader-only work now."""
        return self.elector is not None and self.elector.is_leader

    def _lead(self, fence: Fence) -> None:
        """Start the leader-only work of one term, fenced by ``fence``: the record index
        follower, checkpoint signing, and (``run_anchorer``) the anchoring service and the
        escrow indexer."""
        stop = self._leader_stop = threading.Event()
        self._leader_threads = []
        self._spawn("chainaudit-record-index", self._follow_log, stop)
        self._start_checkpoints(stop)
        if self.run_anchorer:
            self._start_anchorer(fence, stop)
            try:
                self._start_indexer(fence, stop)
            except ChainauditError as exc:
                logger.warning("escrow indexer not started in this term: %s", exc)

    def _spawn(
        self, name: str, target: Callable[[threading.Event], None], stop: threading.Event
    ) -> None:
        thread = threading.Thread(target=target, args=(stop,), name=name, daemon=True)
        self._leader_threads.append(thread)
        thread.start()

    def _follow(self) -> None:
        """End this process's term: stop the leader-only work and wait for it (at most 30 s
        a thread; a deposed writer is fenced anyway)."""
        self._leader_stop.set()
        for thread in self._leader_threads:
            thread.join(timeout=30)
        self._leader_threads = []
        for closing in (self._checkpoints, self.anchorer, self.indexer):
            if closing is not None:
                try:
                    closing.close()
                except Exception:  # a thread still stuck in it: left to the process exit
                    logger.exception("leader: closing %s failed", type(closing).__name__)
        if self.anchorer is not None:
            self.anchorer.log.close()
        if self.indexer is not None:
            self.indexer.log.close()
        self._checkpoints, self.anchorer, self.indexer = None, None, None

    def _duties(self) -> None:
        """Each leader cycle: pass on an anchor request another worker left."""
        if self.lease is not None and self.lease.take_signal(ANCHOR_SIGNAL):
            anchorer = self.anchorer
            if anchorer is not None:
                anchorer.request()

    def _start_checkpoints(self, stop: threading.Event) -> None:
        """Sign a checkpoint whenever the log grew, every ``checkpoint_interval`` seconds."""
        log = Log(self.log_path, kinds=self.kinds, database_url=self.settings.log_database_url)
        signer = self._checkpoints = CheckpointSigner(
            log,
            self.log_signer,
            interval=self.settings.checkpoint_interval,
            cosign=cosigner_from(self.settings, log),
        )
        try:
            signer.tick()  # a restarted service serves its current tree head at once
        except ChainauditError:
            logger.exception("checkpoints: signing the current tree failed; retrying")
        self._spawn("chainaudit-checkpoints", signer.run, stop)

    def _connect_escrow(self) -> None:
        """Find the escrow vault (settings or deployments file); absent on chains without one."""
        try:
            address = contract_address(self.settings, self.chain, "SupplyChainEscrow")
            self.escrow = EscrowClient(self.chain, address)
            self.devnet_token = self._devnet_token()
        except (ChainauditError, OSError) as exc:
            logger.warning("escrow not available: %s", exc)
            self.escrow = None

    def _devnet_token(self) -> str | None:
        try:
            return contract_address(self.settings, self.chain, "MockStablecoin")
        except ChainauditError:
            return None

    def _start_indexer(self, fence: Fence, stop: threading.Event) -> None:
        if self.escrow is None:
            return
        start = deployment_block(
            self.settings.deployments_dir, self.chain_id(), "SupplyChainEscrow"
        )
        self.indexer = Indexer(
            self._open_log(),
            self.chain,
            self.escrow.address,
            confirmations=self.settings.confirmations,
            start_block=start,
            poll_interval=0.5,
            fence=fence,
        )
        self._spawn("chainaudit-indexer", self.indexer.run, stop)

    def token_decimals(self, token: str) -> int | None:
        """An ERC-20's ``decimals()``, cached; ``None`` when the token does not answer."""
        if token not in self._decimals:
            try:
                assert self.escrow is not None
                self._decimals[token] = int(
                    self.chain.run("decimals", self.escrow.token(token).functions.decimals().call)
                )
            except (ChainauditError, AssertionError):
                return None
        return self._decimals[token]

    def devnet_signer(self, address: str) -> LocalAccount | None:
        """The well-known devnet key of ``address`` (development only), else ``None``."""
        if self.settings.environment != "development":
            return None
        if self._devnet_keys is None:
            mnemonic = load_devnet_settings().mnemonic
            self._devnet_keys = {
                a.address.lower(): a.private_key for a in derive_accounts(mnemonic, 10)
            }
        key = self._devnet_keys.get(address.lower())
        return load_account(private_key=key) if key else None

    @property
    def compliance_account(self) -> LocalAccount | None:
        """The compliance officer's key (:func:`chainaudit.app.roles.compliance_account`)."""
        return roles.compliance_account(self.settings)

    @property
    def clearance_account(self) -> LocalAccount | None:
        """The EscrowGate's clearance signer (:func:`chainaudit.app.roles.clearance_account`)."""
        return roles.clearance_account(self.settings)

    def deal_policy(self, client: EscrowClient) -> int:
        """The compliance policy of deals opened through the API: the configured one when the
        vault has a gate (issue 13), else 0."""
        gate, _ = client.escrow_gate()
        return self.settings.gate_policy if int(gate, 16) != 0 else 0

    def _clearances(self, client: EscrowClient) -> ClearanceSigner | None:
        account = self.clearance_account
        if account is None or int(client.escrow_gate()[0], 16) == 0:
            return None
        return ClearanceSigner(account, vault=client.address, chain_id=self.chain_id())

    def guard(self, client: EscrowClient) -> GuardedEscrow:
        """The escrow behind the risk gate: every action that moves or commits money is
        evaluated, and its decision recorded, before it is sent (see
        :mod:`chainaudit.risk.guarded`)."""
        if self._guarded is None or self._guarded.client is not client:
            path = rules_path(self.settings)
            if not path.exists():
                if self.settings.environment != "development":
                    raise ConfigError(f"no risk rule file at {path}: money actions are refused")
                shutil.copyfile(project_root() / "examples" / "rules.toml", path)
                logger.warning("no rule file: installed the example rules at %s", path)
            gate = RiskGate.from_file(
                self.reader, path, contract=client.address, chain_id=self.chain_id()
            )
            self._guarded = GuardedEscrow(
                client,
                gate,
                compliance=self.compliance_account,
                clearances=self._clearances(client),
            )
        return self._guarded

    @property
    def guarded(self) -> GuardedEscrow | None:
        """The guarded escrow, when :meth:`guard` has built it."""
        return self._guarded

    def officer_account(self, key: ApiKey) -> LocalAccount:
        """The officer's own on-chain account (bound to ``key``), for holds it signs.

        Raises :class:`~chainaudit.core.errors.ConfigError` when the key is bound to no account
        or no signing key of that account is configured
        (:func:`chainaudit.app.roles.officer_account`)."""
        return roles.officer_account(self.settings, key.address)

    def _check_anchoring(self) -> None:
        """Whether the anchoring service can be built here (every process knows, so that a
        follower answers ``POST /v1/anchors`` as the leader would)."""
        try:
            anchorer = anchorer_from(
                self.settings, self._open_log(), self.chain, signer=self.log_signer
            )
        except (ChainauditError, OSError) as exc:
            logger.warning("anchoring service not started: %s", exc)
            self.anchoring_problem = str(exc)
            return
        self._anchor_contract = anchorer.contract_address
        anchorer.close()
        anchorer.log.close()
        self.anchoring_problem = None

    def _start_anchorer(self, fence: Fence, stop: threading.Event) -> None:
        if self.anchoring_problem is not None:
            return
        try:
            anchorer = anchorer_from(
                self.settings, self._open_log(), self.chain, signer=self.log_signer
            )
        except (ChainauditError, OSError) as exc:
            logger.warning("anchoring service not started: %s", exc)
            return
        anchorer.book.fence = fence
        self.anchorer = anchorer
        self._spawn("chainaudit-anchorer", anchorer.run, stop)

    def anchoring_running(self) -> bool:
        """Whether the anchoring service runs in this deployment (in the leader, which may
        be another process)."""
        return self.run_anchorer and self.anchoring_problem is None

    def request_anchor(self) -> None:
        """Ask the anchoring service to anchor the current log at its next step: at once in
        the leader, through the lease's signal from any other worker (within a second)."""
        anchorer = self.anchorer
        if anchorer is not None:
            anchorer.request()
        elif self.lease is not None:
            self.lease.signal(ANCHOR_SIGNAL)

    def stop(self) -> None:
        self._stop.set()
        if self.elector is not None:
            self.elector.stop()  # the leader-only work ends, and the lease is released
        if self.lease is not None:
            self.lease.close()
        self.reads.stop()  # the last reads, while the writer still runs
        self.writer.stop()

    def _follow_log(self, stop: threading.Event) -> None:
        """Keep :attr:`record_index` caught up with the log (a request syncs the rest)."""
        with self._open_log() as log:
            while not stop.is_set():
                try:
                    self.record_index.sync(log)
                except ChainauditError:
                    logger.exception("record index: sync failed")
                stop.wait(0.5)

    def _open_log(self) -> Log:
        """A new connection to the log, with this deployment's encryption at rest."""
        return Log(
            self.log_path,
            kinds=self.kinds,
            at_rest=self.at_rest,
            database_url=self.settings.log_database_url,
        )

    def indexed(self) -> tuple[Log, RecordIndex]:
        """This thread's reader and the record index, caught up with every record the reader
        sees (the records appended since the follower's last run are indexed now)."""
        log = self.reader()
        self.record_index.sync(log)
        return log, self.record_index

    def party_deals(
        self, address: str | None, *, before: int | None = None, limit: int | None = None
    ) -> list[int]:
        """The ids of this vault's deals ``address`` is a party of, newest first, from the
        indexer's party index (no chain call; empty without a vault or an address)."""
        if self.escrow is None or address is None:
            return []
        return deals_of(
            self.log_path,
            self.chain_id(),
            self.escrow.address,
            address,
            before=before,
            limit=limit,
            database_url=self.settings.log_database_url,
        )

    # -- per-thread readers -----------------------------------------------------------------

    def reader(self) -> Log:
        """This thread's read connection to the log, refreshed to the latest commit."""
        log: Log | None = getattr(self._local, "log", None)
        if log is None:
            log = self._open_log()
            self._local.log = log
        log.refresh()
        return log

    def anchor_book(self) -> AnchorBook:
        book: AnchorBook | None = getattr(self._local, "book", None)
        if book is None:
            book = AnchorBook(self.reader())
            self._local.book = book
        return book

    def cached_key(self, token: str) -> ApiKey | None:
        """The key of ``token`` if :meth:`authenticate` found it lately (no database read)."""
        cached = self._auth_cache.get(token)
        return cached[0] if cached is not None and cached[1] > time.monotonic() else None

    def authenticate(self, token: str) -> ApiKey | None:
        """The key of ``token``, cached for :data:`AUTH_CACHE_SECONDS` (revocations through the
        API take effect at once, others within that time)."""
        now = time.monotonic()
        cached = self._auth_cache.get(token)
        if cached is not None and cached[1] > now:
            return cached[0]
        key = self.keys.authenticate(token)
        if key is not None:
            if len(self._auth_cache) > 10_000:
                self._auth_cache.clear()
            self._auth_cache[token] = (key, now + AUTH_CACHE_SECONDS)
        return key

    def forget_key(self, key_id: str) -> None:
        """Drop cached authentications of a revoked key."""
        for token in [t for t, (k, _) in self._auth_cache.items() if k.key_id == key_id]:
            self._auth_cache.pop(token, None)

    def chain_id(self) -> int:
        """The chain id, from the endpoint (cached); raises ChainUnavailableError if down."""
        if self._chain_id is None:
            self._chain_id = self.chain.chain_id()
        return self._chain_id

    def anchor_contract(self) -> str:
        """The EIP-55 address of this service's ``AuditAnchor`` (settings, else the deployments
        file); :class:`ConfigError` when none is configured."""
        anchorer = self.anchorer
        if anchorer is not None:
            return anchorer.contract_address
        if self._anchor_contract is not None:
            return self._anchor_contract
        try:
            return str(Web3.to_checksum_address(contract_address(self.settings, self.chain)))
        except ValueError as exc:
            raise ConfigError(f"the AuditAnchor address is not an address: {exc}") from exc

    def contracts_ready(self) -> dict[str, str]:
        """For each configured contract (``AuditAnchor`` always; ``SupplyChainEscrow`` when
        configured or deployed), ``"ok"`` when code is at its address and a view call
        answers, else ``"failed: ..."`` saying which check failed and where."""
        checks: dict[str, str] = {}
        try:
            anchor = self.anchor_contract()
        except ChainauditError as exc:
            checks["AuditAnchor"] = f"failed: not configured: {exc}"
        else:
            onchain = self.chain.contract(anchor, AUDIT_ANCHOR_ABI)
            checks["AuditAnchor"] = self._contract_answers(
                anchor, "checkpointCount()", onchain.functions.checkpointCount().call
            )
        escrow = self.escrow
        if escrow is not None:
            checks["SupplyChainEscrow"] = self._contract_answers(
                escrow.address, "paused()", escrow.contract.functions.paused().call
            )
        elif self.settings.escrow_contract:
            checks["SupplyChainEscrow"] = (
                f"failed: the configured escrow {self.settings.escrow_contract} could not be "
                "connected (see the log)"
            )
        return checks

    def _contract_answers(self, address: str, call: str, run: Callable[[], object]) -> str:
        try:
            if not self.chain.code_at(address):
                return (
                    f"failed: no contract code at {address} (a restarted devnet? run "
                    "`chainaudit deploy` and update the settings)"
                )
            self.chain.run(call, run)
        except ChainauditError as exc:
            return f"failed: {address} does not answer {call}: {exc}"
        return "ok"

    def chain_ready(self) -> tuple[bool, str]:
        try:
            self.chain.block_number()
        except ChainUnavailableError as exc:
            return False, str(exc)
        except ChainauditError as exc:
            return False, str(exc)
        return True, "ok"
