# pragma version 0.4.3
"""
@title distro-train market: escrow, receipts and the public round log
@notice One contract serves every job. The owner of a job deposits its budget;
        after each round it signs one EIP-712 receipt per accepted update, and the
        trainer redeems its receipts here itself, in batches, whether or not the
        owner is still online. Receipts vest: they redeem once the owner has ended
        the job, or VEST seconds after the job's first deposit, whichever comes
        first. Until then the owner may forfeit a trainer caught cheating: none of
        that trainer's receipts of the job will ever redeem, so their amount stays
        in the deposit and goes back to the owner with the refund. The owner
        commits each round (new model sha256, parent model sha256, Merkle root of
        the accepted update hashes) to an ordered, append-only log. After the job
        has ended and the grace period has passed, the owner takes back what was
        not paid.
"""

struct Receipt:
    job: bytes32
    round: uint64
    trainer: address
    update: bytes32
    amount: uint256
    v: uint8
    r: bytes32
    s: bytes32

struct Job:
    owner: address
    deposit: uint256
    paid: uint256
    ended_at: uint256
    refunded: bool
    rounds: uint256
    vest_at: uint256

struct Commitment:
    round: uint64
    model: bytes32
    parent: bytes32
    updates_root: bytes32

event Deposited:
    job: indexed(bytes32)
    owner: indexed(address)
    amount: uint256

event Redeemed:
    job: indexed(bytes32)
    trainer: indexed(address)
    receipt: bytes32
    amount: uint256

event Forfeited:
    job: indexed(bytes32)
    trainer: indexed(address)
    evidence: bytes32

event Ended:
    job: indexed(bytes32)
    at: uint256

event Refunded:
    job: indexed(bytes32)
    owner: indexed(address)
    amount: uint256

event RoundCommitted:
    job: indexed(bytes32)
    index: uint256
    round: uint64
    model: bytes32
    parent: bytes32
    updates_root: bytes32

MAX_BATCH: constant(uint256) = 128

RECEIPT_TYPEHASH: constant(bytes32) = keccak256(
    "Receipt(bytes32 job,uint64 round,address trainer,bytes32 update,uint256 amount)"
)
DOMAIN_TYPEHASH: constant(bytes32) = keccak256(
    "EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)

GRACE: public(immutable(uint256))
VEST: public(immutable(uint256))
DOMAIN_SEPARATOR: public(immutable(bytes32))

jobs: public(HashMap[bytes32, Job])
redeemed: public(HashMap[bytes32, bool])
forfeited: public(HashMap[bytes32, HashMap[address, bool]])
round_log: public(HashMap[bytes32, HashMap[uint256, Commitment]])


@deploy
def __init__(grace_seconds: uint256, vest_seconds: uint256):
    GRACE = grace_seconds
    VEST = vest_seconds
    DOMAIN_SEPARATOR = keccak256(
        abi_encode(
            DOMAIN_TYPEHASH,
            keccak256("DistroTrainMarket"),
            keccak256("1"),
            chain.id,
            self,
        )
    )


@external
@payable
def deposit(job: bytes32):
    """
    @notice Escrow msg.value for `job`. The first deposit makes the sender the
            job's owner; later deposits (top-ups) must come from that owner.
    """
    assert msg.value > 0, "empty deposit"
    owner: address = self.jobs[job].owner
    if owner == empty(address):
        self.jobs[job].owner = msg.sender
        self.jobs[job].vest_at = block.timestamp + VEST
    else:
        assert owner == msg.sender, "not the job owner"
    assert self.jobs[job].ended_at == 0, "job ended"
    self.jobs[job].deposit += msg.value
    log Deposited(job=job, owner=msg.sender, amount=msg.value)


@view
@internal
def _vested(job: bytes32) -> bool:
    return self.jobs[job].ended_at != 0 or block.timestamp >= self.jobs[job].vest_at


@view
@external
def vested(job: bytes32) -> bool:
    """
    @notice Whether the job's receipts redeem now (it ended, or VEST has passed
            since its first deposit), so no trainer of it can be forfeited.
    """
    return self.jobs[job].owner != empty(address) and self._vested(job)


@view
@internal
def _digest(rc: Receipt) -> bytes32:
    struct_hash: bytes32 = keccak256(
        abi_encode(RECEIPT_TYPEHASH, rc.job, rc.round, rc.trainer, rc.update, rc.amount)
    )
    return keccak256(concat(b"\x19\x01", DOMAIN_SEPARATOR, struct_hash))


@view
@external
def receipt_digest(
    job: bytes32, round: uint64, trainer: address, update: bytes32, amount: uint256
) -> bytes32:
    """
    @notice The EIP-712 digest an owner signs, and the key of `redeemed`.
    """
    return self._digest(
        Receipt(job=job, round=round, trainer=trainer, update=update, amount=amount,
                v=0, r=empty(bytes32), s=empty(bytes32))
    )


@external
def redeem(receipts: DynArray[Receipt, MAX_BATCH]):
    """
    @notice Pay every receipt in the batch to its trainer. The whole batch is
            refused if any receipt was redeemed before, is not signed by its job's
            owner, is of a job not yet vested, pays a trainer forfeited from its
            job, or would take the job's payments over its deposit.
    """
    for rc: Receipt in receipts:
        digest: bytes32 = self._digest(rc)
        assert not self.redeemed[digest], "already redeemed"
        owner: address = self.jobs[rc.job].owner
        assert owner != empty(address), "unknown job"
        signer: address = ecrecover(digest, rc.v, rc.r, rc.s)
        assert signer == owner, "not signed by the job owner"
        assert self._vested(rc.job), "not vested"
        assert not self.forfeited[rc.job][rc.trainer], "trainer forfeited"
        assert not self.jobs[rc.job].refunded, "job refunded"
        paid: uint256 = self.jobs[rc.job].paid + rc.amount
        assert paid <= self.jobs[rc.job].deposit, "over the deposit"
        self.jobs[rc.job].paid = paid
        self.redeemed[digest] = True
        send(rc.trainer, rc.amount)
        log Redeemed(job=rc.job, trainer=rc.trainer, receipt=digest, amount=rc.amount)


@external
def forfeit(job: bytes32, trainer: address, evidence: bytes32):
    """
    @notice The owner caught `trainer` cheating in `job` (`evidence`: the sha256 of
            the update judged a cheat): none of the trainer's receipts of the job
            will redeem, and their amount goes back to the owner with the refund.
            Refused once the job's receipts have vested.
    """
    assert self.jobs[job].owner == msg.sender, "not the job owner"
    assert not self._vested(job), "already vested"
    self.forfeited[job][trainer] = True
    log Forfeited(job=job, trainer=trainer, evidence=evidence)


@external
def end_job(job: bytes32):
    """
    @notice The owner declares the job over; the grace period starts now.
    """
    assert self.jobs[job].owner == msg.sender, "not the job owner"
    assert self.jobs[job].ended_at == 0, "job ended"
    self.jobs[job].ended_at = block.timestamp
    log Ended(job=job, at=block.timestamp)


@external
def refund(job: bytes32):
    """
    @notice After end + GRACE, send the unpaid rest of the deposit to the owner.
    """
    j: Job = self.jobs[job]
    assert j.owner == msg.sender, "not the job owner"
    assert j.ended_at != 0, "job not ended"
    assert block.timestamp >= j.ended_at + GRACE, "grace period not over"
    assert not j.refunded, "already refunded"
    rest: uint256 = j.deposit - j.paid
    self.jobs[job].refunded = True
    send(j.owner, rest)
    log Refunded(job=job, owner=j.owner, amount=rest)


@external
def commit_round(
    job: bytes32, round: uint64, model: bytes32, parent: bytes32, updates_root: bytes32
):
    """
    @notice Append one round to the job's public log. Rounds strictly increase,
            and each parent is the model of the entry before it.
    """
    assert self.jobs[job].owner == msg.sender, "not the job owner"
    n: uint256 = self.jobs[job].rounds
    if n > 0:
        last: Commitment = self.round_log[job][n - 1]
        assert round > last.round, "round not after the last"
        assert parent == last.model, "parent is not the last model"
    self.round_log[job][n] = Commitment(round=round, model=model, parent=parent,
                                  updates_root=updates_root)
    self.jobs[job].rounds = n + 1
    log RoundCommitted(job=job, index=n, round=round, model=model, parent=parent,
                       updates_root=updates_root)
