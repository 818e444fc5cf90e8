//! The process's own figures, read from `/proc/self` and the async
//! runtime when scraped.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

#[derive(Debug)]
pub(super) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(rss) = resident_bytes() {
            let metric = ConstGauge::new(rss as i64);
            metric.encode(encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory of the shim",
                Some(&Unit::Bytes),
                MetricType::Gauge,
            )?)?;
        }
        if let Some(fds) = open_fds() {
            let metric = ConstGauge::new(fds as i64);
            metric.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Open file descriptors of the shim",
                None,
                MetricType::Gauge,
            )?)?;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            let metric = ConstGauge::new(handle.metrics().num_alive_tasks() as i64);
            metric.encode(encoder.encode_descriptor(
                "tokio_tasks",
                "Tasks alive in the shim's async runtime",
                None,
                MetricType::Gauge,
            )?)?;
        }
        let info = ConstGauge::new(1i64);
        let mut family = encoder.encode_descriptor(
            "build_info",
            "The running build (always 1)",
            None,
            MetricType::Gauge,
        )?;
        info.encode(family.encode_family(&[("version", env!("CARGO_PKG_VERSION"))])?)?;
        Ok(())
    }
}

/// Resident set size: `/proc/self/statm`'s second field, in pages.
fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page_size).ok()?)
}

fn open_fds() -> Option<usize> {
    // The directory's own descriptor is one of the entries while we read.
    Some(
        std::fs::read_dir("/proc/self/fd")
            .ok()?
            .count()
            .saturating_sub(1),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn own_figures_are_read() {
        assert!(super::resident_bytes().unwrap() > 1 << 20);
        let before = super::open_fds().unwrap();
        let file = std::fs::File::open("/proc/self/statm").unwrap();
        assert_eq!(super::open_fds().unwrap(), before + 1);
        drop(file);
    }
}
