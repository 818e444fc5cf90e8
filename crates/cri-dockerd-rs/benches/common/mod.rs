//! Timing shared by the benchmarks: one warm-up call, then `rounds` timed
//! calls, reported as mean, p50, p95 and max.

use std::time::{Duration, Instant};

pub struct Timing {
    name: String,
    samples: Vec<Duration>,
}

impl Timing {
    fn at(&self, quantile: f64) -> Duration {
        self.samples[((self.samples.len() - 1) as f64 * quantile) as usize]
    }

    pub fn report(&self) {
        let mean = self.samples.iter().sum::<Duration>() / self.samples.len() as u32;
        println!(
            "{:<34} mean {:>9.2?}  p50 {:>9.2?}  p95 {:>9.2?}  max {:>9.2?}",
            self.name,
            mean,
            self.at(0.5),
            self.at(0.95),
            self.at(1.0)
        );
    }
}

pub async fn time<F, Fut>(name: &str, rounds: usize, mut call: F) -> Timing
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    call().await;
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        call().await;
        samples.push(started.elapsed());
    }
    samples.sort();
    Timing {
        name: name.to_string(),
        samples,
    }
}
