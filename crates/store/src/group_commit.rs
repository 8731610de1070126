//! Group commit: the writes of concurrent commands on different streams share one statement.
//!
//! A command's events and read-model rows are one statement (see `read_model::writer`). Under
//! load most of that statement's cost is the same whatever it carries (starting the plan's
//! dozen parts, the round trip, the commit), so commands that finish deciding while others'
//! writes are out wait for the next statement and go in it together, the way concurrent reads
//! share one query and concurrent keyring calls share one batch. A write that finds a
//! statement slot free goes straight through, paying no hand-over.
//!
//! A shared statement commits all its commands or none. When it fails (a lost race, a name
//! another writer took, a passed deadline, the database going away), each of its commands is
//! written again alone, two at a time, so each gets the answer it would have had by itself and
//! no command fails for another's sake.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use aimc_domain::deadline;
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tracing::Instrument;

use crate::credentials::{NumberedRow, StandaloneKeys, StoredRow};
use crate::database::traced;
use crate::metrics::{WRITE_STATEMENT_COMMANDS, WRITE_STATEMENT_SPLITS};
use crate::read_model::writer::{self, Appended, NameClaims};
use crate::read_model::{OwnRow, ReadModelChanges};

/// Statements of commands' writes a process has out at once; more writers wait and go in the
/// next one. One, because on a machine whose cores are all busy the statements saved are worth
/// more than the overlap a second would buy: against two, alternated on one machine (rig, 32
/// connections), Wplain ran 38–39 statements per 100 requests instead of 54–59 and served 8–18%
/// more, W 63–76 instead of 83–87 and 1–5% more. A write that finds the slot free still goes at
/// once, and one blocked on a lock holds the others only as long as `lock_timeout` lets it.
const STATEMENT_SLOTS: usize = 1;

/// Writes of a failed shared statement written again alone at once.
const APART_AT_ONCE: usize = 2;

/// The most commands one statement carries; the rest wait for the next.
const MOST_PER_STATEMENT: usize = 64;

/// One command's write: its events, the snapshot due with them, and the rows they produce.
pub(crate) struct Write {
    pub aggregate_type: &'static str,
    pub aggregate_id: String,
    /// (sequence, event type, event version, payload JSON, metadata JSON)
    pub events: Vec<(i64, String, String, String, String)>,
    /// (last sequence, schema version, payload JSON), when one is due.
    pub snapshot: Option<(i64, i32, String)>,
    pub start_by: Option<chrono::DateTime<chrono::Utc>>,
    pub changes: ReadModelChanges,
    /// Keys the command's answer shows, looked up in the statement that writes it.
    pub lookup: Option<StandaloneKeys>,
}

impl Write {
    fn appended(&self) -> Appended<'_> {
        Appended {
            aggregate_type: self.aggregate_type,
            aggregate_id: &self.aggregate_id,
            events: &self.events,
            snapshot: self.snapshot.as_ref(),
            start_by: self.start_by,
        }
    }
}

/// What a write's statement found for its [`Write::lookup`]; empty without one.
pub(crate) type Found = Vec<StoredRow>;

type Waiting = (
    Write,
    oneshot::Sender<Result<Found, sqlx::Error>>,
    tracing::Span,
);

#[derive(Default)]
struct State {
    out: usize,
    waiting: Vec<Waiting>,
}

/// Where a process's command writes meet; one per command bus.
pub(crate) struct GroupCommit {
    pool: PgPool,
    state: Mutex<State>,
}

impl GroupCommit {
    pub fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(GroupCommit {
            pool,
            state: Mutex::default(),
        })
    }

    /// Writes one command's events and rows, alone or with others', and answers its lookup.
    pub async fn write(self: &Arc<Self>, write: Write) -> Result<Found, sqlx::Error> {
        let receiver = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.out < STATEMENT_SLOTS {
                state.out += 1;
                Err(write)
            } else {
                let (sender, receiver) = oneshot::channel();
                state
                    .waiting
                    .push((write, sender, tracing::Span::current()));
                Ok(receiver)
            }
        };
        match receiver {
            Err(write) => {
                let _slot = Slot(Arc::clone(self));
                alone(&self.pool, &write).await
            }
            // The statement that carries it runs in a task of its own, where the request's
            // deadline is not in force: the wait for it is bounded here instead. A write the
            // request gave up on is dropped from the queue, or fails its `start_by` check if
            // its statement began too late; one begun in time may still land.
            Ok(receiver) => match deadline::bounded("postgresql", receiver).await {
                Ok(Ok(written)) => written,
                // Only if the task writing it panicked: nothing says whether it landed.
                Ok(Err(_)) => Err(sqlx::Error::WorkerCrashed),
                Err(passed) => Err(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    passed,
                ))),
            },
        }
    }

    /// The holder of a slot is done with it: the writes that waited meanwhile go next, in a
    /// task of their own, so the holder's answer does not wait for them.
    fn hand_over(self: &Arc<Self>) {
        let batch = {
            let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            // Writes whose requests gave up (their deadline passed while they waited) go no
            // further: their statement would begin past their `start_by` and fail for everyone.
            state.waiting.retain(|(_, reply, _)| !reply.is_closed());
            if state.waiting.is_empty() {
                state.out -= 1;
                return;
            }
            let take = state.waiting.len().min(MOST_PER_STATEMENT);
            state.waiting.drain(..take).collect::<Vec<_>>()
        };
        let slot = Slot(Arc::clone(self));
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    together(&slot.0.pool, batch).await;
                    drop(slot);
                });
            }
            // The runtime is gone: the writes that waited are answered by their senders'
            // drop, as failed.
            Err(_) => drop(batch),
        }
    }
}

/// A statement slot, given back however its holder ends (answered, cancelled or panicking),
/// so waiting writes are never stranded.
struct Slot(Arc<GroupCommit>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.hand_over();
    }
}

async fn alone(pool: &PgPool, write: &Write) -> Result<Found, sqlx::Error> {
    WRITE_STATEMENT_COMMANDS.observe(1.0);
    let lookups: Vec<(usize, &StandaloneKeys)> =
        write.lookup.iter().map(|lookup| (0, lookup)).collect();
    let rows = traced(
        pool,
        "INSERT events",
        writer::write_streams_looking_up(
            pool,
            &[write.appended()],
            &write.changes,
            NameClaims::Enforced,
            &lookups,
        ),
    )
    .await?;
    Ok(rows.into_iter().map(|numbered| numbered.row).collect())
}

/// Writes the commands that waited in one statement, those whose rows another of them writes
/// alone; each alone again when the shared statement failed. Answers each.
async fn together(pool: &PgPool, batch: Vec<Waiting>) {
    let (shared, mut apart) = disjoint(batch, chrono::Utc::now());
    if shared.len() == 1 {
        apart.extend(shared);
    } else {
        let span = tracing::info_span!("group commit", commands = shared.len());
        for (_, _, waiting) in &shared {
            span.follows_from(waiting);
        }
        let mut changes = ReadModelChanges::default();
        for (write, _, _) in &shared {
            changes.absorb(write.changes.clone());
        }
        let appended: Vec<Appended<'_>> = shared
            .iter()
            .map(|(write, _, _)| write.appended())
            .collect();
        // Numbered by their writes' places in the statement.
        let lookups: Vec<(usize, &StandaloneKeys)> = shared
            .iter()
            .enumerate()
            .filter_map(|(number, (write, _, _))| Some((number, write.lookup.as_ref()?)))
            .collect();
        WRITE_STATEMENT_COMMANDS.observe(shared.len() as f64);
        let written = traced(
            pool,
            "INSERT events",
            writer::write_streams_looking_up(
                pool,
                &appended,
                &changes,
                NameClaims::Enforced,
                &lookups,
            ),
        )
        .instrument(span)
        .await;
        match written {
            Ok(rows) => {
                let mut found: Vec<Found> = shared.iter().map(|_| Found::new()).collect();
                for NumberedRow { lookup, row } in rows {
                    if let Some(found) = found.get_mut(lookup as usize) {
                        found.push(row);
                    }
                }
                for ((_, reply, _), found) in shared.into_iter().zip(found) {
                    let _ = reply.send(Ok(found));
                }
            }
            Err(error) => {
                WRITE_STATEMENT_SPLITS.inc();
                tracing::debug!(%error, "a shared statement failed: its commands are written alone");
                apart.extend(shared);
            }
        }
    }
    // A few at once: a split comes when things go wrong, and 64 writes at once would take the
    // pool's connections from every other request.
    futures::stream::iter(apart)
        .for_each_concurrent(APART_AT_ONCE, |(write, reply, waiting)| {
            async move {
                // Its request gave up meanwhile: its `start_by` has passed, nothing would land.
                if reply.is_closed() {
                    return;
                }
                let _ = reply.send(alone(pool, &write).await);
            }
            .instrument(waiting)
        })
        .await;
}

/// How long before its `start_by` a write still joins a shared statement: one closer than that
/// would likely make the statement begin too late for it, and fail it for everyone.
const SHARING_NEEDS: chrono::TimeDelta = chrono::TimeDelta::milliseconds(50);

/// The writes that may share a statement: those whose rows are all their own within the batch
/// and whose `start_by` is not upon them (as of `now`); and the others.
fn disjoint(
    batch: Vec<Waiting>,
    now: chrono::DateTime<chrono::Utc>,
) -> (Vec<Waiting>, Vec<Waiting>) {
    let sharing: Vec<bool> = {
        let mut taken: HashSet<OwnRow<'_>> = HashSet::new();
        batch
            .iter()
            .map(|(write, _, _)| {
                if write
                    .start_by
                    .is_some_and(|start_by| start_by < now + SHARING_NEEDS)
                {
                    return false;
                }
                let rows: Vec<OwnRow<'_>> = write
                    .changes
                    .own_rows()
                    .chain([OwnRow::Stream(write.aggregate_type, &write.aggregate_id)])
                    .collect();
                let free = rows.iter().all(|row| !taken.contains(row));
                if free {
                    taken.extend(rows);
                }
                free
            })
            .collect()
    };
    let (shared, apart): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .zip(sharing)
        .partition(|(_, sharing)| *sharing);
    (
        shared.into_iter().map(|(waiting, _)| waiting).collect(),
        apart.into_iter().map(|(waiting, _)| waiting).collect(),
    )
}

#[cfg(test)]
mod tests {
    use aimc_domain::CredentialName;

    use super::*;

    fn waiting(aggregate_id: &str, names: &[(&str, &str)]) -> Waiting {
        waiting_until(aggregate_id, names, None)
    }

    fn waiting_until(
        aggregate_id: &str,
        names: &[(&str, &str)],
        start_by: Option<chrono::DateTime<chrono::Utc>>,
    ) -> Waiting {
        let mut changes = ReadModelChanges::default();
        for (workspace, name) in names {
            let key = CredentialName::parse(name).unwrap().key();
            changes
                .names
                .taken
                .push(((*workspace).to_owned(), key, uuid::Uuid::new_v4()));
        }
        let write = Write {
            aggregate_type: "Credential",
            aggregate_id: aggregate_id.to_owned(),
            events: Vec::new(),
            snapshot: None,
            start_by,
            changes,
            lookup: None,
        };
        (write, oneshot::channel().0, tracing::Span::none())
    }

    fn ids(writes: &[Waiting]) -> Vec<&str> {
        writes
            .iter()
            .map(|(write, _, _)| write.aggregate_id.as_str())
            .collect()
    }

    #[test]
    fn writes_that_share_a_row_never_share_a_statement() {
        let batch = vec![
            waiting("acme/c1", &[("acme", "Main")]),
            waiting("acme/c2", &[("acme", "main")]),
            waiting("acme/c1", &[]),
            waiting("acme/c3", &[("acme", "Other"), ("globex", "Main")]),
            waiting("globex/c4", &[("globex", "Backup")]),
        ];

        let (shared, apart) = disjoint(batch, chrono::Utc::now());

        // c2 claims c1's name (names fold case), the second c1 appends to c1's stream.
        assert_eq!(ids(&shared), ["acme/c1", "acme/c3", "globex/c4"]);
        assert_eq!(ids(&apart), ["acme/c2", "acme/c1"]);
    }

    #[test]
    fn a_write_at_its_start_by_goes_alone_rather_than_fail_a_shared_statement() {
        let now = chrono::Utc::now();
        let second = chrono::TimeDelta::seconds(1);
        let batch = vec![
            waiting_until("acme/c1", &[], Some(now + second)),
            waiting_until("acme/c2", &[], Some(now - second)),
            waiting_until(
                "acme/c3",
                &[],
                Some(now + chrono::TimeDelta::milliseconds(10)),
            ),
            waiting_until("acme/c4", &[], None),
        ];

        let (shared, apart) = disjoint(batch, now);

        // c2's start is past and c3's upon it: a statement carrying either would fail whole.
        assert_eq!(ids(&shared), ["acme/c1", "acme/c4"]);
        assert_eq!(ids(&apart), ["acme/c2", "acme/c3"]);
    }
}
