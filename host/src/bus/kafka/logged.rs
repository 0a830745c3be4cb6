//! librdkafka's own log lines and client errors, in the host's log: by default rust-rdkafka
//! writes them through the `log` crate, which the host does not listen to, so a broker
//! connection lost or a rebalance that failed would leave no trace.

use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;

/// The context of the bus's producer (the consumer's context forwards the same way).
pub struct LoggedContext;

impl ClientContext for LoggedContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        forward_log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        forward_error(&error, reason);
    }
}

/// One librdkafka log line at its level.
pub fn forward_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility, "librdkafka: {message}"),
    }
}

/// A client error librdkafka reports (most pass: a broker restarting, a connection dropped).
pub fn forward_error(error: &KafkaError, reason: &str) {
    tracing::warn!("the Kafka client: {error}: {reason}");
}
