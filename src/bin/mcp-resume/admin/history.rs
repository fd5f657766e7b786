//! The chart's data: the counters, sampled every second into a ring of
//! fixed size, and the rates between consecutive samples.

use std::collections::VecDeque;

/// The counters at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub unix_ms: u64,
    /// Events committed so far.
    pub events: f64,
    /// Resumes replayed so far.
    pub resumes: f64,
    /// Resumes refused so far (any reason).
    pub refusals: f64,
}

/// What happened between two samples, per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    /// The end of the interval, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub events_per_second: f64,
    pub resumes_per_second: f64,
    pub refusals_per_second: f64,
}

/// The latest points, at most `capacity`.
#[derive(Debug)]
pub struct History {
    points: VecDeque<Point>,
    capacity: usize,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self {
            points: VecDeque::with_capacity(capacity),
            capacity: capacity.max(2),
        }
    }

    /// Adds a point, dropping the oldest past the capacity.
    pub fn push(&mut self, point: Point) {
        if self.points.len() == self.capacity {
            self.points.pop_front();
        }
        self.points.push_back(point);
    }

    /// The rates between consecutive points, oldest first. A counter that
    /// went down (it cannot, but a clock can go back) reads as zero.
    pub fn rates(&self) -> Vec<Rate> {
        let pairs = self.points.iter().zip(self.points.iter().skip(1));
        pairs
            .filter(|(before, after)| after.unix_ms > before.unix_ms)
            .map(|(before, after)| {
                let seconds = (after.unix_ms - before.unix_ms) as f64 / 1000.0;
                let per_second = |now: f64, then: f64| ((now - then) / seconds).max(0.0);
                Rate {
                    unix_ms: after.unix_ms,
                    events_per_second: per_second(after.events, before.events),
                    resumes_per_second: per_second(after.resumes, before.resumes),
                    refusals_per_second: per_second(after.refusals, before.refusals),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(second: u64, events: f64) -> Point {
        Point {
            unix_ms: second * 1000,
            events,
            ..Point::default()
        }
    }

    #[test]
    fn keeps_the_latest_points_within_its_capacity() {
        let mut history = History::new(3);
        for second in 0..10 {
            history.push(point(second, second as f64 * 10.0));
        }
        let rates = history.rates();
        assert_eq!(rates.len(), 2);
        assert_eq!(rates[0].unix_ms, 8000);
        assert_eq!(rates[1].unix_ms, 9000);
        assert!(rates.iter().all(|rate| rate.events_per_second == 10.0));
    }

    #[test]
    fn rates_are_per_second_whatever_the_interval() {
        let mut history = History::new(10);
        history.push(point(0, 0.0));
        history.push(point(2, 50.0));
        history.push(point(2, 60.0)); // same millisecond: no interval
        history.push(point(3, 40.0)); // went down: zero
        let rates: Vec<_> = history
            .rates()
            .iter()
            .map(|r| r.events_per_second)
            .collect();
        assert_eq!(rates, [25.0, 0.0]);
    }
}
