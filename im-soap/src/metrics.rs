//! Prometheus metrics of the server: calls by errorCode and opertype,
//! latency, in-flight calls, Faults and HTTP refusals, and the core
//! writer's queue depth and group-commit batch sizes (read at scrape time).

use im_core::model::OperType;
use im_core::{Im, Outcome, WriterStats};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of `im_soap_calls_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CallLabels {
    /// The call's errorCode (`0`, `-1001`, …).
    pub error_code: String,
    /// `Install`, `Modify`, `Delete`, `Query`, `mixed`, `other` or `none`.
    pub opertype: &'static str,
}

/// Labels of `im_soap_faults_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct FaultLabels {
    /// `Client`, `Server`, `VersionMismatch` or `MustUnderstand`.
    pub faultcode: &'static str,
}

/// Labels of `im_http_refused_total`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct StatusLabels {
    /// HTTP status sent without a SOAP answer (400, 404, 405, 408, 413).
    pub status: u16,
}

/// The server's metrics and their registry.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Calls answered with a result document.
    pub calls: Family<CallLabels, Counter>,
    /// Faults answered.
    pub faults: Family<FaultLabels, Counter>,
    /// Requests refused at the HTTP level.
    pub refused: Family<StatusLabels, Counter>,
    /// Seconds from request to response, for SOAP calls.
    pub latency: Histogram,
    /// SOAP calls being handled now.
    pub in_flight: Gauge,
}

impl Metrics {
    /// Metrics, with the core's writer statistics read from `im` at scrape time.
    pub fn new(im: Im) -> Metrics {
        let mut registry = Registry::default();
        let calls = Family::<CallLabels, Counter>::default();
        let faults = Family::<FaultLabels, Counter>::default();
        let refused = Family::<StatusLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.000_25, 2.0, 16));
        let in_flight = Gauge::default();
        registry.register(
            "im_soap_calls",
            "EgyptWorkSheetAll calls answered with a result, by errorCode and opertype",
            calls.clone(),
        );
        registry.register(
            "im_soap_faults",
            "EgyptWorkSheetAll requests answered with a SOAP Fault",
            faults.clone(),
        );
        registry.register(
            "im_http_refused",
            "Requests refused at the HTTP level (no SOAP answer)",
            refused.clone(),
        );
        registry.register(
            "im_soap_call_duration_seconds",
            "Time from request to response of EgyptWorkSheetAll calls",
            latency.clone(),
        );
        registry.register(
            "im_soap_in_flight_calls",
            "EgyptWorkSheetAll calls being handled",
            in_flight.clone(),
        );
        registry.register_collector(Box::new(WriterCollector { im }));
        Metrics {
            registry,
            calls,
            faults,
            refused,
            latency,
            in_flight,
        }
    }

    /// Counts one answered call.
    pub fn record_call(&self, outcome: &Outcome, opertype: &'static str, seconds: f64) {
        self.calls
            .get_or_create(&CallLabels {
                error_code: outcome.error_code.code().to_string(),
                opertype,
            })
            .inc();
        self.latency.observe(seconds);
    }

    /// The metrics in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        if prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The label value of an outcome's (or a form's) opertypes.
pub fn opertype_label<'a>(opertypes: impl Iterator<Item = &'a str>) -> &'static str {
    let mut label: Option<&'static str> = None;
    for op in opertypes {
        let this = OperType::parse(op).map_or("other", OperType::as_str);
        match label {
            None => label = Some(this),
            Some(l) if l == this => {}
            Some(_) => return "mixed",
        }
    }
    label.unwrap_or("none")
}

/// Reads the core's writer statistics on each scrape.
struct WriterCollector {
    im: Im,
}

impl std::fmt::Debug for WriterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WriterCollector")
    }
}

impl Collector for WriterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.im.writer_stats();
        let depth = ConstGauge::new(i64::try_from(stats.queue_depth).unwrap_or(i64::MAX));
        let e = encoder.encode_descriptor(
            "im_writer_queue_depth",
            "Work orders waiting for the core's writer",
            None,
            depth.metric_type(),
        )?;
        depth.encode(e)?;
        let jobs = ConstCounter::new(stats.jobs);
        let e = encoder.encode_descriptor(
            "im_writer_jobs",
            "Work orders judged by the core's writer",
            None,
            jobs.metric_type(),
        )?;
        jobs.encode(e)?;
        let expired = ConstCounter::new(stats.expired);
        let e = encoder.encode_descriptor(
            "im_writer_expired",
            "Work orders answered -9999 after waiting longer than the queue time-out",
            None,
            expired.metric_type(),
        )?;
        expired.encode(e)?;
        let failed = ConstCounter::new(stats.failed_batches);
        let e = encoder.encode_descriptor(
            "im_writer_failed_batches",
            "Group-commit transactions that failed in storage (their calls answered -9999)",
            None,
            failed.metric_type(),
        )?;
        failed.encode(e)?;
        let failing = ConstGauge::new(i64::from(stats.failing));
        let e = encoder.encode_descriptor(
            "im_store_refusing_writes",
            "1 while the last group-commit transaction failed in storage",
            None,
            failing.metric_type(),
        )?;
        failing.encode(e)?;
        let buckets: Vec<(f64, u64)> = WriterStats::bucket_bounds()
            .iter()
            .zip(stats.batch_size_buckets.iter())
            .map(|(bound, count)| {
                let upper = bound.map_or(f64::INFINITY, |b| {
                    f64::from(u32::try_from(b).unwrap_or(u32::MAX))
                });
                (upper, *count)
            })
            .collect();
        let mut e = encoder.encode_descriptor(
            "im_writer_batch_size",
            "Work orders per group-commit transaction",
            None,
            MetricType::Histogram,
        )?;
        // Lossy only beyond 2^53 work orders.
        #[allow(clippy::cast_precision_loss)]
        let sum = stats.jobs as f64;
        e.encode_histogram::<NoLabelSet>(sum, stats.batches, &buckets, None)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opertype_labels() {
        assert_eq!(opertype_label([].into_iter()), "none");
        assert_eq!(opertype_label(["install"].into_iter()), "Install");
        assert_eq!(
            opertype_label(["Install", "INSTALL"].into_iter()),
            "Install"
        );
        assert_eq!(opertype_label(["Install", "Query"].into_iter()), "mixed");
        assert_eq!(opertype_label(["frobnicate"].into_iter()), "other");
    }
}
