//! Applies the embedded migrations of an engine. diesel's migration harness is synchronous, so it
//! runs on a blocking thread over an async connection wrapped for sync use.

use diesel_async::{AsyncConnection, AsyncMigrationHarness};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness};

use crate::core::{Error, Result};

pub async fn run_pending<C>(connection: C, migrations: EmbeddedMigrations) -> Result<Vec<String>>
where
    C: AsyncConnection + 'static,
    AsyncMigrationHarness<C>: MigrationHarness<C::Backend>,
{
    tokio::task::spawn_blocking(move || {
        let mut harness = AsyncMigrationHarness::new(connection);
        harness
            .run_pending_migrations(migrations)
            .map(|applied| applied.iter().map(ToString::to_string).collect())
            .map_err(|err| Error::Internal(format!("migration failed: {err}")))
    })
    .await
    .map_err(|err| Error::Internal(format!("migration task failed: {err}")))?
}
