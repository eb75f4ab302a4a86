//! API keys and roles. A key is shown once when created; only a hash of its secret is stored.

use sha2::{Digest, Sha256};

use super::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    Service,
    Worker,
    Reader,
}

/// What a call needs. Each RPC names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read state: get, list, progress, health.
    Read,
    /// Watch streams.
    Watch,
    /// Create and cancel work.
    Write,
    /// Claim, work, complete, fail, extend.
    Work,
    /// Operator actions: manual resets, recovery runs.
    Operate,
}

impl Role {
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Service, Role::Worker, Role::Reader];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Service => "service",
            Role::Worker => "worker",
            Role::Reader => "reader",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|role| role.as_str() == text)
    }

    pub fn allows(self, permission: Permission) -> bool {
        use Permission::*;
        match self {
            Role::Admin => true,
            Role::Service => matches!(permission, Read | Watch | Write),
            Role::Worker => matches!(permission, Work),
            Role::Reader => matches!(permission, Read | Watch),
        }
    }
}

const KEY_PREFIX: &str = "rtd";

/// A stored key: its public id, the hash of its secret, and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub secret_hash: String,
    pub role: Role,
}

/// A key as created: the full text is given to the user once.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub record: ApiKeyRecord,
    pub plaintext: String,
}

impl NewApiKey {
    pub fn generate(role: Role) -> Self {
        let key_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let secret = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self {
            record: ApiKeyRecord {
                secret_hash: hash_secret(&secret),
                key_id: key_id.clone(),
                role,
            },
            plaintext: format!("{KEY_PREFIX}_{key_id}_{secret}"),
        }
    }
}

/// A presented key split into its id and secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedKey {
    pub key_id: String,
    secret: String,
}

impl PresentedKey {
    pub fn parse(text: &str) -> Result<Self> {
        let malformed = || Error::Unauthenticated("malformed API key".into());
        let rest = text
            .strip_prefix(KEY_PREFIX)
            .and_then(|rest| rest.strip_prefix('_'))
            .ok_or_else(malformed)?;
        let (key_id, secret) = rest.split_once('_').ok_or_else(malformed)?;
        if key_id.is_empty() || secret.is_empty() || key_id.len() > 64 || secret.len() > 256 {
            return Err(malformed());
        }
        Ok(Self {
            key_id: key_id.to_owned(),
            secret: secret.to_owned(),
        })
    }

    /// Compares in constant time, so the hash cannot be guessed byte by byte from timings.
    pub fn matches(&self, record: &ApiKeyRecord) -> bool {
        let presented = hash_secret(&self.secret);
        presented.len() == record.secret_hash.len()
            && presented
                .bytes()
                .zip(record.secret_hash.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

fn hash_secret(secret: &str) -> String {
    // The secret is 256 random bits, so a plain (fast) hash cannot be brute-forced.
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_matches_its_record_and_no_other() {
        let key = NewApiKey::generate(Role::Worker);
        let presented = PresentedKey::parse(&key.plaintext).unwrap();
        assert_eq!(presented.key_id, key.record.key_id);
        assert!(presented.matches(&key.record));
        let other = NewApiKey::generate(Role::Worker);
        assert!(!presented.matches(&ApiKeyRecord {
            key_id: key.record.key_id.clone(),
            ..other.record
        }));
        assert!(!key.plaintext.contains(&key.record.secret_hash));
    }

    #[test]
    fn malformed_keys_are_refused() {
        for text in ["", "rtd", "rtd_", "rtd_abc", "xyz_abc_def", "rtd__secret"] {
            assert!(PresentedKey::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn roles_allow_what_the_contract_says() {
        assert!(Role::Worker.allows(Permission::Work));
        assert!(!Role::Worker.allows(Permission::Write));
        assert!(!Role::Reader.allows(Permission::Write));
        assert!(Role::Reader.allows(Permission::Watch));
        assert!(Role::Service.allows(Permission::Write));
        assert!(!Role::Service.allows(Permission::Operate));
        assert!(Role::Admin.allows(Permission::Operate));
    }
}
