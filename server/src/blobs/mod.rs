//! Where upload content lives while it arrives and after it is complete.
//!
//! Content arrives into an *unsealed* blob, written at offsets (a resumed upload writes where the
//! last call stopped). Once checked, the blob is *sealed*: an atomic step after which it is the
//! upload's complete content. A crash can leave an unsealed blob longer than what the database
//! counts as received, never a sealed blob that is not complete: the database is what says how
//! much is durable, the seal is what says the content is whole.

use std::io;
use std::path::PathBuf;

use async_trait::async_trait;
use tokio::io::AsyncRead;

mod local;

pub use local::LocalDirectory;

/// A reader of sealed content, from the offset it was opened at.
pub type BlobReader = Box<dyn AsyncRead + Send + Unpin>;

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Opens the unsealed blob `key` for writing, creating it when needed. A blob sealed by a
    /// finished upload whose completion was never recorded (a crash between the two) is
    /// unsealed again, so the resumed upload can finish.
    async fn writer(&self, key: &str) -> io::Result<Box<dyn BlobWriter>>;
    /// SHA-256 (lowercase hex) of the first `len` bytes of the unsealed blob; an error when it
    /// holds fewer.
    async fn digest(&self, key: &str, len: u64) -> io::Result<String>;
    /// Makes the first `len` bytes of the unsealed blob its sealed content, atomically.
    async fn seal(&self, key: &str, len: u64) -> io::Result<()>;
    /// Removes the unsealed blob (content that failed its checksum).
    async fn discard(&self, key: &str) -> io::Result<()>;
    /// Reads sealed content from `offset`.
    async fn open(&self, key: &str, offset: u64) -> io::Result<BlobReader>;
    /// Removes sealed content (after its retention).
    async fn remove(&self, key: &str) -> io::Result<()>;
}

/// Writes one unsealed blob.
#[async_trait]
pub trait BlobWriter: Send {
    async fn write_at(&mut self, offset: u64, data: Vec<u8>) -> io::Result<()>;
    /// Makes everything written so far durable.
    async fn sync(&mut self) -> io::Result<()>;
}

/// Opens the blob store a configuration names: `file://path` or a plain path (a local
/// directory, created when missing).
pub fn open(location: &str) -> Result<LocalDirectory, String> {
    if location.contains("://") && !location.starts_with("file://") {
        return Err(format!(
            "blob store {location:?}: only local directories (a path or file://path) are supported"
        ));
    }
    let path = PathBuf::from(location.strip_prefix("file://").unwrap_or(location));
    LocalDirectory::open(path).map_err(|err| format!("blob store {location:?}: {err}"))
}
