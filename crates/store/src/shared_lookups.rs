//! Reads that arrive while others are being answered share one query.
//!
//! Under load most of a small read's cost is the statement itself (the round trip, PostgreSQL
//! starting and finishing the plan, sqlx's bookkeeping), not the rows it finds; so lookups that
//! queue up while earlier queries are out go in the next query together. A lookup that finds
//! nothing being answered goes out at once, paying no hand-over. Every query starts after the
//! lookups it answers arrived, so a read still sees every write answered before it was made.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot, Semaphore};
use tracing::Instrument;

use crate::error::StoreError;

/// One kind of lookup, and the query that answers many of them.
pub(crate) trait Answer: Send + Sync + 'static {
    type Key: Send + 'static;
    type Value: Send + 'static;
    /// The name of a shared query's span.
    const SPAN: &'static str;
    /// Queries in flight at once: a new batch forms while these are out.
    const QUERIES_IN_FLIGHT: usize = QUERIES_IN_FLIGHT;

    /// One answer per key, in the keys' order; an error of the query fails every lookup.
    fn answer(
        &self,
        keys: &[Self::Key],
    ) -> impl Future<Output = Result<Vec<Result<Self::Value, StoreError>>, StoreError>> + Send;
}

/// Queries in flight at once: a new batch forms while these are out. Two, so one is answered
/// while the other travels; with four, queries carried three lookups on average under R and
/// each lookup cost PostgreSQL a quarter more (A/B under R and X: 12-15% more requests served
/// with two, p99 no worse; one was no better than two).
const QUERIES_IN_FLIGHT: usize = 2;
/// Lookups one query answers at most.
const MOST_PER_QUERY: usize = 64;

pub(crate) struct SharedLookups<A: Answer> {
    answerer: Arc<A>,
    queue: mpsc::UnboundedSender<Lookup<A>>,
    in_flight: Arc<Semaphore>,
}

impl<A: Answer> Clone for SharedLookups<A> {
    fn clone(&self) -> Self {
        SharedLookups {
            answerer: self.answerer.clone(),
            queue: self.queue.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

struct Lookup<A: Answer> {
    key: A::Key,
    reply: oneshot::Sender<Result<A::Value, StoreError>>,
    /// The span of the request that asked, which a shared query's span links to.
    requester: tracing::Span,
}

impl<A: Answer> SharedLookups<A> {
    /// Starts the task that forms the batches; needs a Tokio runtime. The task ends once every
    /// clone of this value is dropped.
    pub fn new(answerer: A) -> Self {
        let answerer = Arc::new(answerer);
        let (queue, waiting) = mpsc::unbounded_channel();
        let in_flight = Arc::new(Semaphore::new(A::QUERIES_IN_FLIGHT));
        tokio::spawn(form_batches(answerer.clone(), waiting, in_flight.clone()));
        SharedLookups {
            answerer,
            queue,
            in_flight,
        }
    }

    /// The answer for `key`, from a query of its own when nothing is being answered, else from
    /// the next query that goes out.
    pub async fn get(&self, key: A::Key) -> Result<A::Value, StoreError> {
        let (reply, answer) = oneshot::channel();
        let lookup = Lookup {
            key,
            reply,
            requester: tracing::Span::current(),
        };
        let stopped = || StoreError::Unavailable(format!("the {} has stopped", A::SPAN));
        // With nothing being answered there is nothing to share: asking here spares the
        // hand-over to the batching task, which a lone request would only wait for.
        let idle = self.in_flight.available_permits() == A::QUERIES_IN_FLIGHT;
        match idle
            .then(|| self.in_flight.clone().try_acquire_owned().ok())
            .flatten()
        {
            Some(_slot) => answer_batch(&*self.answerer, vec![lookup]).await,
            None => self.queue.send(lookup).map_err(|_| stopped())?,
        }
        answer.await.map_err(|_| stopped())?
    }
}

async fn form_batches<A: Answer>(
    answerer: Arc<A>,
    mut waiting: mpsc::UnboundedReceiver<Lookup<A>>,
    in_flight: Arc<Semaphore>,
) {
    while let Some(first) = waiting.recv().await {
        // Waiting for a free slot is what lets a batch grow under load.
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            return;
        };
        let mut batch = vec![first];
        while batch.len() < MOST_PER_QUERY {
            match waiting.try_recv() {
                Ok(lookup) => batch.push(lookup),
                Err(_) => break,
            }
        }
        // The query answers several requests, so it is a trace of its own, linked from each of
        // theirs, rather than a child of whichever asked first.
        let span = tracing::info_span!(parent: None, "shared lookup", otel.name = A::SPAN, lookups = batch.len() as i64);
        for lookup in &batch {
            span.follows_from(&lookup.requester);
        }
        let answerer = answerer.clone();
        tokio::spawn(
            async move {
                answer_batch(&*answerer, batch).await;
                drop(slot);
            }
            .instrument(span),
        );
    }
}

async fn answer_batch<A: Answer>(answerer: &A, batch: Vec<Lookup<A>>) {
    let (keys, replies): (Vec<A::Key>, Vec<_>) = batch
        .into_iter()
        .map(|lookup| (lookup.key, lookup.reply))
        .unzip();
    match answerer.answer(&keys).await {
        Ok(answers) => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                // The requester may have gone (request cancelled); nothing to do then.
                let _ = reply.send(answer);
            }
        }
        Err(error) => {
            for reply in replies {
                let _ = reply.send(Err(error.clone()));
            }
        }
    }
}
