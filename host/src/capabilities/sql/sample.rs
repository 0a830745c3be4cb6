//! The sample warehouse: a small shop (customers, products, orders, order lines) kept as SQL
//! in `config/sample/warehouse.sql`, created as a SQLite file for every `data.sql` source
//! marked `sample: true` whose file does not exist yet. It is written to a temporary file and
//! renamed into place, so an interrupted start never leaves half a warehouse behind.

use std::path::Path;

use anyhow::Context;
use sqlx::ConnectOptions;

use super::sources::sqlite_file;
use crate::config::Config;

/// The sample warehouse's schema (with comments) and rows.
pub const SAMPLE_WAREHOUSE: &str = include_str!("../../../../config/sample/warehouse.sql");

/// Create the missing sample sources; returns the names of those created now.
pub async fn ensure_samples(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut created = Vec::new();
    for (name, source) in &config.data.sql {
        if !source.sample {
            continue;
        }
        let file = sqlite_file(source.url.expose(), &config.base_dir).with_context(|| {
            format!("data.sql.{name}: `sample: true` needs a sqlite:// file URL")
        })?;
        if file.exists() {
            continue;
        }
        create(&file).await.with_context(|| {
            format!(
                "data.sql.{name}: creating the sample warehouse at {}",
                file.display()
            )
        })?;
        tracing::info!(source = %name, file = %file.display(), "created the sample warehouse");
        created.push(name.clone());
    }
    Ok(created)
}

async fn create(file: &Path) -> anyhow::Result<()> {
    if let Some(parent) = file.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = file.with_extension(format!("creating-{}", std::process::id()));
    let _ = std::fs::remove_file(&temporary);
    let mut connection = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&temporary)
        .create_if_missing(true)
        .connect()
        .await?;
    let written = sqlx::raw_sql(SAMPLE_WAREHOUSE)
        .execute(&mut connection)
        .await;
    drop(connection);
    if let Err(error) = written {
        let _ = std::fs::remove_file(&temporary);
        return Err(error.into());
    }
    std::fs::rename(&temporary, file)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_sample_is_created_once_with_its_rows() {
        let dir = tempfile::tempdir().expect("dir");
        let yaml =
            "data:\n  sql:\n    sample: { url: \"sqlite://shop/sample.db\", sample: true }\n";
        let mut config = crate::config::Config::parse(yaml, "t.yaml", |_| None).expect("config");
        config.base_dir = dir.path().to_owned();
        assert_eq!(
            super::ensure_samples(&config).await.expect("created"),
            ["sample"]
        );
        assert!(
            super::ensure_samples(&config)
                .await
                .expect("kept")
                .is_empty()
        );
        let file = dir.path().join("shop/sample.db");
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&file)
            .read_only(true);
        let mut connection = sqlx::ConnectOptions::connect(&options)
            .await
            .expect("opens");
        let orders: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM orders WHERE total > 0")
            .fetch_one(&mut connection)
            .await
            .expect("orders");
        assert_eq!(orders.0, 240);
    }
}
