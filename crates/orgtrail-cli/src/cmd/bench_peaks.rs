//! Peak resident memory and import rate by window of acknowledged events within one import:
//! the peak and the rate while the store grew to its first million events against those over
//! its last million, measured in the same process (the same allocator, the same load) instead
//! of in two runs. Two runs minutes apart differ by as much as the machine's speed drifts
//! between them (the single-core floor itself moved 0.82x over ten minutes of one run); windows
//! of one run next to each other share most of that drift, and their CPU time per event is
//! told beside their rate so that a slower window can be seen to have done more work or not.
//!
//! Linux keeps the process's peak (VmHWM) exactly: it is raised before any page is unmapped,
//! so a spike of a few milliseconds counts, which a thread sampling VmRSS would miss (mimalloc
//! returns freed pages after 10 ms). Writing `5` to `/proc/self/clear_refs` resets it to the
//! current RSS, so each window's peak is read and the peak reset when the window ends. Where
//! that file cannot be written (not Linux, or no procfs), no window figures are given.

use std::sync::Mutex;
use std::time::Instant;

use crate::cmd::bench_scale::Rss;

/// Resets the process's peak resident memory (VmHWM) to its current RSS. False when the
/// kernel refused (or there is no procfs).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The peaks of consecutive windows of `window` acknowledged events.
pub(crate) struct WindowPeaks {
    window: u64,
    state: Mutex<State>,
}

struct State {
    /// Input events acknowledged (durable) so far.
    acked: u64,
    /// Where the current window ends.
    boundary: u64,
    /// The peak of each finished window, KiB.
    peaks: Vec<u64>,
    /// The RSS at the end of each finished window, KiB.
    ends: Vec<u64>,
    /// The peak before the first reset (process start to the import's start), KiB.
    before: u64,
    /// When the current window started, the process's CPU seconds then, and the events
    /// acknowledged by then.
    window_start: (Instant, f64, u64),
    /// Each finished window's import rate (acknowledged events per second) and the process's
    /// CPU microseconds per acknowledged event in it (every thread: the import's and, in
    /// `bench store`, the event generator's).
    rates: Vec<(f64, f64)>,
    /// False once a reset failed: the windows are not measured.
    works: bool,
}

impl WindowPeaks {
    /// Starts the first window now (at the start of an import).
    pub(crate) fn start(window: u64) -> WindowPeaks {
        let window = window.max(1);
        let before = Rss::now().peak_kib;
        let works = reset_peak();
        WindowPeaks {
            window,
            state: Mutex::new(State {
                acked: 0,
                boundary: window,
                peaks: Vec::new(),
                ends: Vec::new(),
                before,
                window_start: (Instant::now(), process_cpu_secs(), 0),
                rates: Vec::new(),
                works,
            }),
        }
    }

    /// Events `first..=last` (1-based ordinals of the input) are durable. Ends every window
    /// whose end they reach.
    pub(crate) fn acked(&self, first: u64, last: u64) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        s.acked += last + 1 - first;
        while s.acked >= s.boundary {
            s.end_window();
            s.boundary += self.window;
        }
    }

    /// Ends the import: a last, partial window is ended too.
    pub(crate) fn finish(self) -> Peaks {
        let mut s = self.state.into_inner().unwrap_or_else(|e| e.into_inner());
        if s.acked + self.window > s.boundary {
            s.end_window();
        }
        let overall = s.peaks.iter().copied().max().unwrap_or(0).max(s.before);
        Peaks {
            window: self.window,
            ends: if s.works { s.ends } else { Vec::new() },
            windows: if s.works { s.peaks } else { Vec::new() },
            overall_kib: overall,
            rates: s.rates,
        }
    }
}

impl State {
    /// Ends the current window: its peak (where the peak can be reset), and its rate.
    fn end_window(&mut self) {
        if self.works {
            let rss = Rss::now();
            self.peaks.push(rss.peak_kib);
            self.ends.push(rss.now_kib);
            self.works = reset_peak();
        }
        let (at, cpu, acked) = self.window_start;
        let (now, cpu_now) = (Instant::now(), process_cpu_secs());
        let events = self.acked.saturating_sub(acked).max(1) as f64;
        self.rates.push((
            events / now.duration_since(at).as_secs_f64().max(1e-9),
            (cpu_now - cpu).max(0.0) * 1e6 / events,
        ));
        self.window_start = (now, cpu_now, self.acked);
    }
}

/// CPU seconds (user and system) of every thread of this process so far; 0 where they cannot
/// be read.
fn process_cpu_secs() -> f64 {
    crate::cmd::bench_transport::cpu_seconds(std::process::id()).unwrap_or(0.0)
}

/// What [`WindowPeaks`] measured.
#[derive(Debug, Clone)]
pub(crate) struct Peaks {
    /// Events per window.
    pub(crate) window: u64,
    /// The peak of each window in order, KiB (the last may be shorter). Empty where the peak
    /// could not be reset.
    pub(crate) windows: Vec<u64>,
    /// The RSS at the end of each window, KiB: what stays between the peaks.
    pub(crate) ends: Vec<u64>,
    /// The peak of the process up to the import's end (the windows' peaks and what came
    /// before them), KiB: what VmHWM would read had it never been reset.
    pub(crate) overall_kib: u64,
    /// Each window's import rate (events per second) and CPU microseconds per event (every
    /// thread of the process).
    pub(crate) rates: Vec<(f64, f64)>,
}

impl Peaks {
    /// The first and the last window's peaks, KiB: the same window's twice when there is one.
    pub(crate) fn first_or_only(&self) -> Option<(u64, u64)> {
        match self.windows.as_slice() {
            [] => None,
            [only] => Some((*only, *only)),
            [first, .., last] => Some((*first, *last)),
        }
    }

    /// The first and the last window's rates and CPU per event (see [`Peaks::rates`]); the
    /// same window's twice when there is one.
    pub(crate) fn first_and_last_rate(&self) -> Option<((f64, f64), (f64, f64))> {
        Some((*self.rates.first()?, *self.rates.last()?))
    }

    /// Prints each window's import rate and CPU per event, then the first's and the last's and
    /// their ratio; then each window's peak, then the first's and the last's and their ratio.
    pub(crate) fn print(&self) {
        if let Some(((r0, c0), (r1, c1))) = self.first_and_last_rate() {
            let list = |f: &dyn Fn(&(f64, f64)) -> String| {
                self.rates.iter().map(f).collect::<Vec<_>>().join(" ")
            };
            println!(
                "import by window of {} acknowledged events (events/s): {}",
                self.window,
                list(&|(r, _)| format!("{r:.0}"))
            );
            println!(
                "CPU by window (microseconds per event, every thread of the process): {}",
                list(&|(_, c)| format!("{c:.1}"))
            );
            println!(
                "import in one run: {r0:.0} events/s over the first {} events, {r1:.0} over the last ones, {:.2}x (CPU per event {:.2}x)",
                self.window,
                r1 / r0.max(1e-9),
                c1 / c0.max(1e-9)
            );
        }
        let mib = |kib: u64| kib as f64 / 1024.0;
        let Some((first, last)) = self.first_or_only() else {
            println!("memory by window: not measured (the peak RSS cannot be reset here)");
            return;
        };
        let list = |kibs: &[u64]| {
            kibs.iter()
                .map(|&k| format!("{:.1}", mib(k)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        println!(
            "memory by window of {} acknowledged events (peak RSS in each, MiB): {}",
            self.window,
            list(&self.windows)
        );
        println!(
            "memory at the end of each window (RSS, MiB): {}",
            list(&self.ends)
        );
        println!(
            "memory in one run: peak RSS {:.1} MiB over the first {} events, {:.1} MiB over the last ones, {:.2}x",
            mib(first),
            self.window,
            mib(last),
            last as f64 / first.max(1) as f64
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_end_where_the_acknowledged_events_reach_them() {
        let peaks = WindowPeaks::start(1000);
        let works = peaks.state.lock().map(|s| s.works).unwrap_or(false);
        // Out of order and across two boundaries at once, as batches are acknowledged.
        peaks.acked(501, 1000);
        peaks.acked(1, 500);
        peaks.acked(1001, 3100);
        let p = peaks.finish();
        // 0-1000, 1000-2000, 2000-3000, and the partial 3000-3100, each with its rate.
        assert_eq!(p.rates.len(), 4);
        assert!(p.rates.iter().all(|&(r, c)| r > 0.0 && c >= 0.0));
        if works {
            assert_eq!(p.windows.len(), 4);
            assert!(p.first_or_only().is_some());
            assert!(p.windows.iter().all(|&w| w > 0 && w <= p.overall_kib));
        } else {
            assert!(p.windows.is_empty());
        }
    }
}
