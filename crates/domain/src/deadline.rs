//! The time a request has left for its work on PostgreSQL and Vault.
//!
//! Set once per request by the HTTP layer and honoured by every port that waits on the network,
//! so a hung dependency ends the request with "unavailable, retry later" instead of holding it
//! for as long as the dependency hangs. A task-local, not a parameter: the ports sit several
//! calls deep under cqrs-es' traits, which have no room for one.

use std::future::Future;

use tokio::time::Instant;

tokio::task_local! {
    static DEADLINE: Instant;
}

/// The request's deadline passed while it waited on a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the request's deadline passed while waiting on {0}")]
pub struct DeadlinePassed(pub &'static str);

/// Runs `work` with `deadline` in force for every [`bounded`] call inside it.
pub async fn within<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The deadline in force, if any (none outside a request: start-up, CLI commands).
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Waits for `work` until the deadline in force, if any; `dependency` names what was waited
/// on, for the error.
pub async fn bounded<F: Future>(
    dependency: &'static str,
    work: F,
) -> Result<F::Output, DeadlinePassed> {
    match current() {
        Some(deadline) => tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| DeadlinePassed(dependency)),
        None => Ok(work.await),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_outlasting_the_deadline_is_cut_at_the_deadline() {
        let deadline = Instant::now() + Duration::from_secs(2);
        let started = Instant::now();
        let outcome = within(
            deadline,
            bounded("postgresql", tokio::time::sleep(Duration::from_secs(45))),
        )
        .await;
        assert_eq!(outcome, Err(DeadlinePassed("postgresql")));
        assert_eq!(started.elapsed(), Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn work_inside_the_deadline_finishes() {
        let deadline = Instant::now() + Duration::from_secs(2);
        let outcome = within(deadline, bounded("vault", async { 7 })).await;
        assert_eq!(outcome, Ok(7));
    }

    #[tokio::test]
    async fn without_a_deadline_work_is_not_bounded() {
        assert_eq!(current(), None);
        assert_eq!(bounded("vault", async { 7 }).await, Ok(7));
    }
}
