//! The collector: the one consumer of ended requests. Each recorded request counts in
//! the run's totals, in its phase's figures and in its phase's window; phase and window
//! come from the request's index in the [`Schedule`] (its intended send time), never
//! from when it ended, and its latency counts from that intended time.

use super::phase::Phase;
use super::schedule::Schedule;
use super::scheduler::Ended;
use super::summary::{PhaseSummary, Recorder, Summary};
use super::window::Windows;
use std::time::{Duration, Instant};

pub struct Collector {
    schedule: Schedule,
    phases: Vec<Phase>,
    total: Tally,
    /// One per phase, in order.
    per_phase: Vec<PhaseTally>,
}

/// Requests recorded into one summary, and when the last of them ended.
struct Tally {
    recorder: Recorder,
    /// Due time of the first request the tally can hold.
    first_due: Instant,
    /// The latest end seen, `>= first_due`.
    last_end: Instant,
    first_error: Option<String>,
}

struct PhaseTally {
    tally: Tally,
    /// `Some` with `--window-ms`.
    windows: Option<Windows>,
}

impl Collector {
    /// `schedule` was made from `phases` and starts (request 0 is due) at `start`;
    /// `window` is > 0 when set.
    pub fn new(
        schedule: &Schedule,
        phases: &[Phase],
        start: Instant,
        deadline: Duration,
        window: Option<Duration>,
    ) -> Collector {
        let per_phase = phases
            .iter()
            .enumerate()
            .map(|(k, p)| PhaseTally {
                tally: Tally::new(deadline, start + schedule.phase_start(k)),
                windows: window.map(|w| Windows::new(w, p.duration)),
            })
            .collect();
        Collector {
            schedule: schedule.clone(),
            phases: phases.to_vec(),
            total: Tally::new(deadline, start + schedule.measure_start()),
            per_phase,
        }
    }

    /// Records one request; warm-up requests (which the scheduler does not send here)
    /// are ignored.
    pub fn record(&mut self, ended: Ended) {
        let Some(k) = self.schedule.phase_of(ended.index) else { return };
        let latency = ended.end.saturating_duration_since(ended.due);
        let phase = &mut self.per_phase[k];
        if let Some(windows) = &mut phase.windows {
            let in_time = latency <= self.total.recorder.deadline();
            windows.record(self.schedule.offset_in_phase(ended.index), ended.outcome, latency, in_time);
        }
        phase.tally.record(&ended, latency);
        self.total.record(&ended, latency);
    }

    /// The run's summary, with each phase's.
    pub fn finish(self) -> Summary {
        let offered = offered_rate(&self.phases);
        let mut summary = self.total.summarize(offered);
        let measure_start = self.schedule.measure_start();
        summary.phases = self
            .per_phase
            .iter()
            .zip(&self.phases)
            .enumerate()
            .map(|(k, (t, p))| {
                let start = self.schedule.phase_start(k);
                PhaseSummary {
                    start_s: (start - measure_start).as_secs_f64(),
                    duration_s: p.duration.as_secs_f64(),
                    figures: t.tally.summarize(p.rate),
                    windows: t.windows.as_ref().map_or_else(Vec::new, Windows::summarize),
                }
            })
            .collect();
        summary
    }
}

impl Tally {
    fn new(deadline: Duration, first_due: Instant) -> Tally {
        Tally { recorder: Recorder::new(deadline), first_due, last_end: first_due, first_error: None }
    }

    fn record(&mut self, ended: &Ended, latency: Duration) {
        self.recorder.record(ended.outcome, latency, ended.start_lag);
        self.last_end = self.last_end.max(ended.end);
        if self.first_error.is_none() {
            self.first_error.clone_from(&ended.error);
        }
    }

    /// Elapsed runs from the first due time to the last end.
    fn summarize(&self, offered_rate: f64) -> Summary {
        let mut s = self.recorder.summarize(offered_rate, self.last_end - self.first_due);
        s.first_error.clone_from(&self.first_error);
        s
    }
}

/// The rate the schedule offered over the measured phases: the one phase's rate, or
/// their mean weighted by duration.
fn offered_rate(phases: &[Phase]) -> f64 {
    if let [only] = phases {
        return only.rate;
    }
    let span: f64 = phases.iter().map(|p| p.duration.as_secs_f64()).sum();
    phases.iter().map(|p| p.rate * p.duration.as_secs_f64()).sum::<f64>() / span
}
