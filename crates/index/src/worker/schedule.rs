//! The worker's state machine: which step comes next, decided from the
//! worker's own state and what it observes of the other workers, without
//! touching Redis or PostgreSQL. The driver (`worker::Session`) performs
//! each step and reports its outcome back, so every decision the loop makes
//! is a plain function of values that a unit test can give it.
//!
//! A round is: read or claim a batch (`Read`), then either apply and
//! acknowledge it (`Apply`), wait for the workers that hold this worker's
//! hand-overs (`PauseForOwners`), or, with nothing to do, sweep, check for
//! the end of the stream and raise the watermark (`Idle`). A failed round is
//! waited out or ends the worker (`Recovery`).

use std::time::{Duration, Instant};

use crate::error::IndexError;

pub(super) const MIN_BACKOFF: Duration = Duration::from_millis(50);
pub(super) const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// While batches keep coming, the watermark is raised at most this often.
const WATERMARK_EVERY: Duration = Duration::from_millis(500);
/// How often a worker that is out of work checks whether the stream is
/// drained, with `exit_when_drained`.
const DRAIN_CHECK_EVERY: Duration = Duration::from_millis(20);

/// The configuration the decisions depend on.
#[derive(Debug, Clone, Copy)]
pub(super) struct Settings {
    /// How long an entry stays unacknowledged before another consumer may
    /// take it over.
    pub claim_idle: Duration,
    /// The longest a read for new entries blocks.
    pub block: Duration,
    pub exit_when_drained: bool,
}

impl Settings {
    /// Claim checks run a few times per idle period, so a dead consumer's
    /// entries wait at most about 1.5 x `claim_idle`.
    fn claim_every(&self) -> Duration {
        (self.claim_idle / 2).max(Duration::from_millis(50))
    }
}

/// Where a batch is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// Entries delivered to this consumer name and never acknowledged: what
    /// a predecessor of the same name left.
    OwnPending,
    /// Entries other consumers left unacknowledged longer than `claim_idle`.
    Stale,
    /// New entries, waiting at most `block_ms` for them.
    New { block_ms: u64 },
}

/// The worker's next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Step {
    Read(Source),
    /// The owners of the events this worker handed over have a batch of
    /// them waiting: those wait in memory, so read nothing new for a moment.
    PauseForOwners,
    /// Apply the entries read, with the events other workers handed over,
    /// then dead-letter and acknowledge.
    Apply,
    /// Nothing to apply: second sweeps alone, the drain check, the watermark.
    Idle,
}

/// What a worker sees of the others when it decides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Shares {
    /// Other workers handed this one events to apply.
    pub mine_waiting: bool,
    /// Some worker has a whole batch of this one's hand-overs waiting.
    pub owners_behind: bool,
}

/// Why a round failed, as far as the next step is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// Redis or PostgreSQL is away, or PostgreSQL chose the transaction as a
    /// victim; `redis` when the Redis connections may be broken.
    Outage {
        redis: bool,
    },
    /// Redis lost the stream and its group.
    MissingGroup,
    Fatal,
}

impl Failure {
    pub(super) fn of(err: &IndexError) -> Failure {
        if err.is_transient() {
            Failure::Outage {
                redis: matches!(
                    err,
                    IndexError::Redis { .. } | IndexError::RedisReply { .. }
                ),
            }
        } else if err.is_missing_group() {
            Failure::MissingGroup
        } else {
            Failure::Fatal
        }
    }
}

/// What the worker does about a failed round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recovery {
    /// Wait `delay`, dropping the Redis connections first when `reconnect`.
    WaitOut { delay: Duration, reconnect: bool },
    /// Recreate the group at the next round; a committed batch not yet
    /// acknowledged is dropped (its entries went with the stream, and ingest
    /// refills the stream from the watermark).
    RecreateGroup,
    /// End the worker with the error.
    Stop,
}

/// The worker's state between steps.
#[derive(Debug)]
pub(super) struct Machine {
    settings: Settings,
    /// Until its first empty read, a worker finishes what a predecessor of
    /// the same name left pending before it reads anything new.
    own_pending: bool,
    last_claim: Option<Instant>,
    last_watermark: Instant,
    /// Batches committed since the watermark was last raised. When the
    /// stream goes quiet they are covered at the next idle round; without
    /// this an idle index leaves its last batches out of the watermark, so
    /// it cannot say its database is complete and a restart replays them.
    watermark_behind: bool,
    backoff: Duration,
    need_group: bool,
}

impl Machine {
    pub(super) fn new(settings: Settings, now: Instant) -> Self {
        Machine {
            settings,
            own_pending: true,
            last_claim: None,
            last_watermark: now,
            watermark_behind: true,
            backoff: MIN_BACKOFF,
            need_group: false,
        }
    }

    /// The first step of a round.
    pub(super) fn begin(&self, now: Instant, shares: Shares) -> Step {
        if self.own_pending {
            Step::Read(Source::OwnPending)
        } else {
            self.claim_or_read(now, shares)
        }
    }

    /// The step after a read from `source` gave `got` entries.
    pub(super) fn after_read(
        &mut self,
        source: Source,
        got: usize,
        now: Instant,
        shares: Shares,
    ) -> Step {
        match source {
            Source::OwnPending => {
                self.own_pending = got > 0;
                if got > 0 {
                    Step::Apply
                } else {
                    self.claim_or_read(now, shares)
                }
            }
            Source::Stale => {
                self.last_claim = Some(now);
                if got > 0 {
                    Step::Apply
                } else {
                    self.without_batch(shares)
                }
            }
            Source::New { .. } => settle(got, shares),
        }
    }

    fn claim_or_read(&self, now: Instant, shares: Shares) -> Step {
        let claim_due = self
            .last_claim
            .is_none_or(|at| now.saturating_duration_since(at) >= self.settings.claim_every());
        if claim_due {
            Step::Read(Source::Stale)
        } else {
            self.without_batch(shares)
        }
    }

    /// Nothing read or claimed so far this round.
    fn without_batch(&self, shares: Shares) -> Step {
        match (shares.owners_behind, shares.mine_waiting) {
            (true, false) => Step::PauseForOwners,
            // Events handed over by other workers are due now: only look
            // for company.
            (false, true) => Step::Read(Source::New { block_ms: 1 }),
            (false, false) => Step::Read(Source::New {
                block_ms: self.block_ms(),
            }),
            (true, true) => Step::Apply,
        }
    }

    fn block_ms(&self) -> u64 {
        let block = if self.settings.exit_when_drained {
            // The stream may be delivered to the end while other workers
            // still apply their last batches: look again soon, so the
            // process exits when they are done.
            self.settings.block.min(DRAIN_CHECK_EVERY)
        } else {
            self.settings.block
        };
        (block.as_millis() as u64).max(1)
    }

    /// After a batch is acknowledged: whether to raise the watermark now.
    /// When not, the next idle round does.
    pub(super) fn watermark_due_after_batch(&mut self, now: Instant) -> bool {
        let due = now.saturating_duration_since(self.last_watermark) >= WATERMARK_EVERY;
        if !due {
            self.watermark_behind = true;
        }
        due
    }

    /// Entries were acknowledged outside a batch (a batch left unfinished
    /// by an outage, or deletions swept alone); they may have held the
    /// watermark below them.
    pub(super) fn acknowledged_alone(&mut self) {
        self.watermark_behind = true;
    }

    /// In an idle round: whether acknowledged entries are still above the
    /// watermark.
    pub(super) fn watermark_due_when_idle(&self) -> bool {
        self.watermark_behind
    }

    pub(super) fn watermark_raised(&mut self, now: Instant) {
        self.watermark_behind = false;
        self.last_watermark = now;
    }

    /// Whether the consumer group must be created again before reading.
    pub(super) fn group_needed(&self) -> bool {
        self.need_group
    }

    pub(super) fn group_recreated(&mut self) {
        self.need_group = false;
    }

    /// A round ended without an error.
    pub(super) fn round_done(&mut self) {
        self.backoff = MIN_BACKOFF;
    }

    /// A round failed: what to do about it. Outages are waited out with a
    /// delay that doubles up to `MAX_BACKOFF` until a round succeeds.
    pub(super) fn failed(&mut self, failure: Failure) -> Recovery {
        match failure {
            Failure::Outage { redis } => {
                let delay = self.backoff;
                self.backoff = next_backoff(self.backoff);
                Recovery::WaitOut {
                    delay,
                    reconnect: redis,
                }
            }
            Failure::MissingGroup => {
                self.need_group = true;
                Recovery::RecreateGroup
            }
            Failure::Fatal => Recovery::Stop,
        }
    }
}

/// After the last read of a round: apply when there is anything to apply.
fn settle(got: usize, shares: Shares) -> Step {
    if got > 0 || shares.mine_waiting {
        Step::Apply
    } else {
        Step::Idle
    }
}

/// The delay after `backoff`: doubled, at most `MAX_BACKOFF`.
pub(super) fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: Shares = Shares {
        mine_waiting: false,
        owners_behind: false,
    };

    fn settings() -> Settings {
        Settings {
            claim_idle: Duration::from_secs(30),
            block: Duration::from_millis(1000),
            exit_when_drained: false,
        }
    }

    fn new_read(block_ms: u64) -> Step {
        Step::Read(Source::New { block_ms })
    }

    #[test]
    fn a_new_worker_finishes_its_own_pending_entries_first() {
        let now = Instant::now();
        let mut machine = Machine::new(settings(), now);
        assert_eq!(machine.begin(now, NONE), Step::Read(Source::OwnPending));
        assert_eq!(
            machine.after_read(Source::OwnPending, 3, now, NONE),
            Step::Apply
        );
        // Still its own pending entries, until a read finds none.
        assert_eq!(machine.begin(now, NONE), Step::Read(Source::OwnPending));
        assert_eq!(
            machine.after_read(Source::OwnPending, 0, now, NONE),
            Step::Read(Source::Stale)
        );
        assert_eq!(machine.begin(now, NONE), Step::Read(Source::Stale));
    }

    #[test]
    fn stale_entries_are_claimed_at_most_every_half_claim_idle() {
        let start = Instant::now();
        let mut machine = Machine::new(settings(), start);
        machine.after_read(Source::OwnPending, 0, start, NONE);
        assert_eq!(
            machine.after_read(Source::Stale, 0, start, NONE),
            new_read(1000)
        );
        let soon = start + Duration::from_secs(14);
        assert_eq!(machine.begin(soon, NONE), new_read(1000));
        let later = start + Duration::from_secs(15);
        assert_eq!(machine.begin(later, NONE), Step::Read(Source::Stale));
        assert_eq!(
            machine.after_read(Source::Stale, 2, later, NONE),
            Step::Apply
        );
        assert_eq!(machine.begin(later, NONE), new_read(1000));
    }

    #[test]
    fn a_short_claim_idle_still_waits_50ms_between_claims() {
        let start = Instant::now();
        let mut machine = Machine::new(
            Settings {
                claim_idle: Duration::from_millis(10),
                ..settings()
            },
            start,
        );
        machine.after_read(Source::OwnPending, 0, start, NONE);
        machine.after_read(Source::Stale, 0, start, NONE);
        assert_eq!(
            machine.begin(start + Duration::from_millis(49), NONE),
            new_read(1000)
        );
        assert_eq!(
            machine.begin(start + Duration::from_millis(50), NONE),
            Step::Read(Source::Stale)
        );
    }

    /// A machine past its own pending entries with a claim just done.
    fn reading(settings: Settings, now: Instant) -> Machine {
        let mut machine = Machine::new(settings, now);
        machine.after_read(Source::OwnPending, 0, now, NONE);
        machine.after_read(Source::Stale, 0, now, NONE);
        machine
    }

    #[test]
    fn hand_overs_decide_whether_to_read_wait_or_apply() {
        let now = Instant::now();
        let machine = reading(settings(), now);
        let shares = |mine_waiting, owners_behind| Shares {
            mine_waiting,
            owners_behind,
        };
        assert_eq!(machine.begin(now, shares(false, false)), new_read(1000));
        // Events handed to this worker are due: a read that barely waits.
        assert_eq!(machine.begin(now, shares(true, false)), new_read(1));
        assert_eq!(
            machine.begin(now, shares(false, true)),
            Step::PauseForOwners
        );
        // Owners behind, but this worker has its own to apply: no read.
        assert_eq!(machine.begin(now, shares(true, true)), Step::Apply);
    }

    #[test]
    fn an_empty_read_is_idle_unless_events_were_handed_over() {
        let now = Instant::now();
        let mut machine = reading(settings(), now);
        let read = Source::New { block_ms: 1000 };
        assert_eq!(machine.after_read(read, 0, now, NONE), Step::Idle);
        assert_eq!(machine.after_read(read, 5, now, NONE), Step::Apply);
        let handed = Shares {
            mine_waiting: true,
            owners_behind: false,
        };
        assert_eq!(machine.after_read(read, 0, now, handed), Step::Apply);
    }

    #[test]
    fn draining_workers_block_briefly() {
        let now = Instant::now();
        let draining = Settings {
            exit_when_drained: true,
            ..settings()
        };
        assert_eq!(reading(draining, now).begin(now, NONE), new_read(20));
        let short = Settings {
            block: Duration::from_millis(5),
            ..draining
        };
        assert_eq!(reading(short, now).begin(now, NONE), new_read(5));
        let zero = Settings {
            block: Duration::ZERO,
            exit_when_drained: false,
            ..settings()
        };
        assert_eq!(reading(zero, now).begin(now, NONE), new_read(1));
    }

    #[test]
    fn the_watermark_follows_batches_at_most_twice_a_second_and_catches_up_when_idle() {
        let start = Instant::now();
        let mut machine = Machine::new(settings(), start);
        // A fresh worker raises it at its first idle round.
        assert!(machine.watermark_due_when_idle());
        machine.watermark_raised(start);
        assert!(!machine.watermark_due_when_idle());

        let soon = start + Duration::from_millis(100);
        assert!(!machine.watermark_due_after_batch(soon));
        assert!(machine.watermark_due_when_idle());
        machine.watermark_raised(soon);

        let later = soon + WATERMARK_EVERY;
        assert!(machine.watermark_due_after_batch(later));
        machine.watermark_raised(later);
        assert!(!machine.watermark_due_when_idle());

        machine.acknowledged_alone();
        assert!(machine.watermark_due_when_idle());
    }

    #[test]
    fn outages_are_waited_out_with_a_doubling_delay() {
        let mut machine = Machine::new(settings(), Instant::now());
        let redis = Failure::Outage { redis: true };
        let postgres = Failure::Outage { redis: false };
        assert_eq!(
            machine.failed(redis),
            Recovery::WaitOut {
                delay: MIN_BACKOFF,
                reconnect: true
            }
        );
        assert_eq!(
            machine.failed(postgres),
            Recovery::WaitOut {
                delay: MIN_BACKOFF * 2,
                reconnect: false
            }
        );
        for _ in 0..10 {
            machine.failed(postgres);
        }
        assert_eq!(
            machine.failed(postgres),
            Recovery::WaitOut {
                delay: MAX_BACKOFF,
                reconnect: false
            }
        );
        machine.round_done();
        assert_eq!(
            machine.failed(redis),
            Recovery::WaitOut {
                delay: MIN_BACKOFF,
                reconnect: true
            }
        );
    }

    #[test]
    fn a_lost_group_is_recreated_before_the_next_read() {
        let mut machine = Machine::new(settings(), Instant::now());
        assert!(!machine.group_needed());
        assert_eq!(
            machine.failed(Failure::MissingGroup),
            Recovery::RecreateGroup
        );
        assert!(machine.group_needed());
        // Until it is created, every round tries again.
        machine.round_done();
        assert!(machine.group_needed());
        machine.group_recreated();
        assert!(!machine.group_needed());
        assert_eq!(machine.failed(Failure::Fatal), Recovery::Stop);
    }

    #[test]
    fn errors_are_classified_by_what_recovers_them() {
        assert_eq!(
            Failure::of(&IndexError::Config("bad".into())),
            Failure::Fatal
        );
        assert_eq!(
            Failure::of(&IndexError::Contended("actors".into())),
            Failure::Outage { redis: false }
        );
        let missing = IndexError::GroupMissing {
            context: "reading".into(),
            key: "s".into(),
            group: "g".into(),
        };
        assert_eq!(Failure::of(&missing), Failure::MissingGroup);
        let dropped = IndexError::Redis {
            context: "reading".into(),
            source: redis::RedisError::from(std::io::Error::from(
                std::io::ErrorKind::ConnectionReset,
            )),
        };
        assert_eq!(Failure::of(&dropped), Failure::Outage { redis: true });
    }
}
