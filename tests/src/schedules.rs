//! Schedulers in the test process: a host's runtime, its agent (the host config's `agent`
//! section) behind a memory bus, and a `Scheduler` over a given sessions database (a SQLite
//! file or a PostgreSQL schema), so several can share one database as replicas do.

use std::sync::Arc;

use databot::config::Config;
use databot::schedules::{Scheduler, Schedules};
use tokio_util::sync::CancellationToken;

use crate::TestHost;

/// A running scheduler; `stop` cancels its runs in progress and hands them back.
pub struct SchedulerUnderTest {
    pub schedules: Schedules,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl SchedulerUnderTest {
    /// Start one on `host` over the sessions database `sessions_url`, named `replica`, with
    /// `schedules_yaml` as the `schedules:` section (indented two spaces, may be empty).
    pub async fn start(
        host: &TestHost,
        sessions_url: &str,
        replica: &str,
        schedules_yaml: &str,
    ) -> Self {
        let yaml =
            format!("schedules:\n  replica: {replica}\n  poll_interval_ms: 200\n{schedules_yaml}");
        let config = Config::parse(&yaml, "schedules.yaml", |_| None).expect("schedules config");
        let sessions = Arc::new(
            databot::agent::sessions::SessionStore::connect(sessions_url)
                .await
                .expect("the sessions database opens"),
        );
        let schedules = Schedules::open(&config, sessions.clone())
            .await
            .expect("the schedule tables open");
        schedules
            .sync_config(&config)
            .await
            .expect("the file's jobs apply");
        let agent = Arc::new(databot::agent::Agent::new(
            host.runtime.clone(),
            sessions.clone(),
            host.runtime.config().agent.clone(),
        ));
        let bus: Arc<dyn databot::bus::Bus> = Arc::new(databot::bus::MemoryBus::new(
            agent,
            databot::bus::BusLimits::default(),
        ));
        // Results go out through the host's channel plugins, as in `databot serve`.
        let channels =
            databot::channels::Channels::new(host.runtime.clone(), bus.clone(), sessions);
        let scheduler = Scheduler::new(
            schedules.store.clone(),
            bus,
            host.runtime.clone(),
            Some(channels),
            config.schedules.clone(),
            schedules.metrics.clone(),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(scheduler.run(stop.clone()));
        Self {
            schedules,
            stop,
            task,
        }
    }

    /// Stop claiming, cancel the runs in progress and hand them back.
    pub async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// A PostgreSQL sessions URL in a fresh schema of the live database (dropped first if left
/// over), so concurrent tests never share schedule tables.
pub async fn postgres_sessions(prefix: &str) -> String {
    let schema = crate::unique_name(prefix);
    crate::postgres_exec(&[
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
        format!("CREATE SCHEMA {schema}"),
    ])
    .await;
    format!("{}?options=-csearch_path%3D{schema}", crate::POSTGRES_URL)
}
