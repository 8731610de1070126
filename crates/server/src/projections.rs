//! `aimc projections rebuild`: the online rebuild with a progress bar on a terminal and plain
//! progress lines otherwise.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aimc_store::{Projector, RebuildProgress, REBUILD_CHUNK_EVENTS};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use sqlx::PgPool;

pub async fn rebuild(pool: PgPool) -> anyhow::Result<()> {
    aimc_store::migrate(&pool)
        .await
        .context("Failed to run database migrations")?;
    let started = Instant::now();
    let shown = Shown::new();
    let rebuilt = Projector::new(pool)
        .rebuild_watched(REBUILD_CHUNK_EVENTS, &shown)
        .await
        .context("Failed to rebuild the read model; the live one is untouched, run it again")?;
    shown.finish();
    let events = rebuilt.replayed + rebuilt.caught_up;
    let seconds = started.elapsed().as_secs_f64();
    // The first line is what the benchmark reads.
    println!(
        "replayed {events} events in {seconds:.2} s ({:.0} events/s)",
        events as f64 / seconds.max(1e-9)
    );
    println!(
        "{} of them appended while the rebuild ran; the fresh read model replaced the live one \
         in one transaction",
        rebuilt.caught_up
    );
    Ok(())
}

/// A bar on a terminal; a line every 10% or 5 s elsewhere (a CI log, a file).
struct Shown {
    bar: Option<ProgressBar>,
    total: AtomicU64,
    done: AtomicU64,
    last_line: Mutex<Instant>,
}

impl Shown {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0).with_prefix("replaying the log");
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:40}] {pos}/{len} events ({per_sec}, {eta} left)",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Shown {
            bar,
            total: AtomicU64::new(0),
            done: AtomicU64::new(0),
            last_line: Mutex::new(Instant::now()),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl RebuildProgress for Shown {
    fn replaying(&self, events: u64) {
        self.total.store(events, Ordering::Relaxed);
        match &self.bar {
            Some(bar) => bar.set_length(events),
            None => eprintln!("replaying {events} events into fresh tables"),
        }
    }

    fn replayed(&self, events: u64) {
        let done = self.done.fetch_add(events, Ordering::Relaxed) + events;
        if let Some(bar) = &self.bar {
            bar.inc(events);
            return;
        }
        let total = self.total.load(Ordering::Relaxed).max(1);
        let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
        let tenth = (total / 10).max(1);
        if done >= total
            || done / tenth != (done - events) / tenth
            || last.elapsed() >= Duration::from_secs(5)
        {
            *last = Instant::now();
            eprintln!("{done}/{total} events replayed");
        }
    }

    fn swapping(&self) {
        match &self.bar {
            Some(bar) => bar.set_prefix("catching up and swapping in"),
            None => eprintln!("catching up with the events appended meanwhile, then swapping in"),
        }
    }
}
