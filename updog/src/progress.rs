//! Progress of an update: a bar on stderr when it is a terminal, JSON-lines events on stderr
//! with `--json`, nothing otherwise.
//!
//! Every event is one line, one JSON object with an `"event"` field (log lines never start
//! with `{`, so a supervisor can tell them apart):
//!
//! | event | fields |
//! |---|---|
//! | `selected` | `version`, `variant`, `set` (the inactive set written to) |
//! | `phase` | `phase`: `cache_migrations`, `clear_inactive`, `mark_valid`, `flip`, `done` |
//! | `image_start` | `image` (`root`/`boot`/`hash`), `target`, `total` (compressed bytes), `partition` |
//! | `image_progress` | `image`, `downloaded` (compressed bytes so far), `total` |
//! | `image_done` | `image`, `downloaded`, `written` |
//!
//! `image_progress` is sent at most every 250 ms (for all images together).
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often progress events are sent.
const EVENT_INTERVAL: Duration = Duration::from_millis(250);

/// One progress event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event<'a> {
    /// The update was chosen.
    Selected {
        /// Version.
        version: &'a str,
        /// Variant.
        variant: &'a str,
        /// Set written to.
        set: &'a str,
    },
    /// A step of the write sequence starts.
    Phase {
        /// Which.
        phase: &'a str,
    },
    /// An image starts downloading.
    ImageStart {
        /// `root`, `boot` or `hash`.
        image: &'a str,
        /// TUF target name.
        target: &'a str,
        /// Compressed size.
        total: u64,
        /// Partition number written to.
        partition: u32,
    },
    /// Bytes arrived.
    ImageProgress {
        /// `root`, `boot` or `hash`.
        image: &'a str,
        /// Compressed bytes received.
        downloaded: u64,
        /// Compressed size.
        total: u64,
    },
    /// An image was written and verified.
    ImageDone {
        /// `root`, `boot` or `hash`.
        image: &'a str,
        /// Compressed bytes received.
        downloaded: u64,
        /// Decompressed bytes written.
        written: u64,
    },
}

/// Where progress goes.
#[derive(Debug)]
pub enum Progress {
    /// Nothing (not a terminal, no `--json`).
    Silent,
    /// JSON-lines events on stderr.
    Json {
        /// When the last progress event was sent.
        last: Mutex<Option<Instant>>,
    },
    /// A bar on the terminal.
    Bar {
        /// The current bar, and its image's name.
        bar: Mutex<Option<(String, ProgressBar)>>,
    },
}

impl Progress {
    /// The reporter for this process: events with `--json`, a bar on a terminal, else nothing.
    pub fn for_process(json: bool) -> Progress {
        if json {
            Progress::Json {
                last: Mutex::new(None),
            }
        } else if std::io::stderr().is_terminal() {
            Progress::Bar {
                bar: Mutex::new(None),
            }
        } else {
            Progress::Silent
        }
    }

    fn emit(event: &Event<'_>) {
        if let Ok(line) = serde_json::to_string(event) {
            let mut err = std::io::stderr().lock();
            // Progress is best effort: a closed stderr must not fail the update.
            let _ = writeln!(err, "{line}");
        }
    }

    /// Report an event.
    pub fn event(&self, event: Event<'_>) {
        match self {
            Progress::Silent => {}
            Progress::Json { last } => {
                if let Event::ImageProgress { .. } = event {
                    let mut last = last
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    if last.is_some_and(|t| t.elapsed() < EVENT_INTERVAL) {
                        return;
                    }
                    *last = Some(Instant::now());
                }
                Progress::emit(&event);
            }
            Progress::Bar { bar } => {
                let mut bar = bar
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                match event {
                    // The next image's download may start while the image before is still
                    // written: its bar is done then.
                    Event::ImageStart { image, total, .. } => {
                        if let Some((_, old)) = bar.take() {
                            old.finish();
                        }
                        let new = ProgressBar::new(total);
                        if let Ok(style) = ProgressStyle::with_template(
                            "{msg:>5} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        ) {
                            new.set_style(style.progress_chars("=> "));
                        }
                        new.set_message(image.to_owned());
                        *bar = Some((image.to_owned(), new));
                    }
                    Event::ImageProgress {
                        image, downloaded, ..
                    } => {
                        if let Some((_, bar)) = bar.as_ref().filter(|(name, _)| name == image) {
                            bar.set_position(downloaded);
                        }
                    }
                    Event::ImageDone { image, .. } => {
                        if bar.as_ref().is_some_and(|(name, _)| name == image)
                            && let Some((_, bar)) = bar.take()
                        {
                            bar.finish();
                        }
                    }
                    Event::Selected { .. } | Event::Phase { .. } => {}
                }
            }
        }
    }
}
