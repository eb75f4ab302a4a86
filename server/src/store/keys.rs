//! API key queries and the `Store` methods, written once for both engines; the engine-specific
//! ones delegate to the engine's `elector` and `change_listener`.

macro_rules! impl_key_store {
    ($store:ty, $engine:literal) => {
        const _: () = {
            use diesel::{ExpressionMethods, OptionalExtension, QueryDsl};
            use diesel_async::RunQueryDsl;

            use $crate::core::auth::{ApiKeyRecord, Role};
            use $crate::core::{Error, Result, Timestamp};
            use $crate::store::error::TxError;
            use $crate::store::schema::api_keys;

            #[async_trait::async_trait]
            impl $crate::store::KeyStore for $store {
                async fn insert_api_key(&self, key: &ApiKeyRecord, now: Timestamp) -> Result<()> {
                    let mut conn = self.conn().await?;
                    diesel::insert_into(api_keys::table)
                        .values((
                            api_keys::key_id.eq(&key.key_id),
                            api_keys::secret_hash.eq(&key.secret_hash),
                            api_keys::role.eq(key.role.as_str()),
                            api_keys::created_at.eq(now.as_micros()),
                        ))
                        .execute(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(())
                }

                async fn find_api_key(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
                    let mut conn = self.conn().await?;
                    let row: Option<(String, String, String)> = api_keys::table
                        .filter(api_keys::key_id.eq(key_id))
                        .select((api_keys::key_id, api_keys::secret_hash, api_keys::role))
                        .first(&mut *conn)
                        .await
                        .optional()
                        .map_err(TxError::from)?;
                    row.map(|(key_id, secret_hash, role)| {
                        let role = Role::parse(&role)
                            .ok_or_else(|| Error::Internal(format!("unknown role {role:?}")))?;
                        Ok(ApiKeyRecord {
                            key_id,
                            secret_hash,
                            role,
                        })
                    })
                    .transpose()
                }

                async fn count_api_keys(&self) -> Result<u64> {
                    let mut conn = self.conn().await?;
                    let n: i64 = api_keys::table
                        .count()
                        .get_result(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(u64::try_from(n).unwrap_or(0))
                }
            }

            #[async_trait::async_trait]
            impl $crate::store::Store for $store {
                fn engine(&self) -> &'static str {
                    $engine
                }

                async fn ping(&self) -> Result<()> {
                    let mut conn = self.conn().await?;
                    diesel::sql_query("SELECT 1")
                        .execute(&mut *conn)
                        .await
                        .map_err(TxError::from)?;
                    Ok(())
                }

                fn leader_elector(&self) -> std::sync::Arc<dyn $crate::store::LeaderElector> {
                    self.elector()
                }

                fn listen_for_changes(
                    &self,
                    sink: std::sync::Arc<dyn $crate::store::ChangeSink>,
                ) -> Option<tokio::task::JoinHandle<()>> {
                    self.change_listener(sink)
                }
            }
        };
    };
}

pub(crate) use impl_key_store;
