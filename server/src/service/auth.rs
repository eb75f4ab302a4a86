//! Who may call what. With no API key in the database every call is allowed (the server then
//! only listens on loopback, see `app`); once a key exists, every call needs a valid key whose
//! role allows the call's permission.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::core::auth::{ApiKeyRecord, Permission, PresentedKey};
use crate::core::{Error, Result};
use crate::store::Store;

/// How long a looked-up key, or the answer to "are there keys at all?", is trusted without
/// asking the database again: keeps a database round trip off most calls.
const CACHE_TTL: Duration = Duration::from_secs(2);

pub struct Authenticator {
    store: Arc<dyn Store>,
    keys: Mutex<HashMap<String, (ApiKeyRecord, Instant)>>,
    any_key: Mutex<Option<(bool, Instant)>>,
}

impl Authenticator {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            keys: Mutex::new(HashMap::new()),
            any_key: Mutex::new(None),
        }
    }

    /// Checks the `authorization` value of a call (`Bearer <key>`) against `permission`.
    pub async fn authorize(
        &self,
        authorization: Option<&str>,
        permission: Permission,
    ) -> Result<()> {
        let Some(authorization) = authorization else {
            return if self.any_key_exists().await? {
                Err(Error::Unauthenticated(
                    "this server requires an API key: send `authorization: Bearer <key>`".into(),
                ))
            } else {
                Ok(())
            };
        };
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .ok_or_else(|| Error::Unauthenticated("authorization must be `Bearer <key>`".into()))?;
        let presented = PresentedKey::parse(token.trim())?;
        let record = self
            .lookup(&presented.key_id)
            .await?
            .filter(|record| presented.matches(record))
            .ok_or_else(|| Error::Unauthenticated("unknown or revoked API key".into()))?;
        if record.role.allows(permission) {
            Ok(())
        } else {
            Err(Error::PermissionDenied(format!(
                "the {} role may not do this ({permission:?} is needed)",
                record.role.as_str()
            )))
        }
    }

    async fn any_key_exists(&self) -> Result<bool> {
        if let Some((exists, at)) = *lock(&self.any_key) {
            if at.elapsed() < CACHE_TTL {
                return Ok(exists);
            }
        }
        let exists = self.store.count_api_keys().await? > 0;
        *lock(&self.any_key) = Some((exists, Instant::now()));
        Ok(exists)
    }

    async fn lookup(&self, key_id: &str) -> Result<Option<ApiKeyRecord>> {
        if let Some((record, at)) = lock(&self.keys).get(key_id) {
            if at.elapsed() < CACHE_TTL {
                return Ok(Some(record.clone()));
            }
        }
        let record = self.store.find_api_key(key_id).await?;
        let mut keys = lock(&self.keys);
        match &record {
            Some(record) => {
                keys.insert(key_id.to_owned(), (record.clone(), Instant::now()));
            }
            None => {
                keys.remove(key_id);
            }
        }
        Ok(record)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}
