//! The blob store in a local directory: unsealed blobs in `incoming/`, sealed ones in `sealed/`.
//! Sealing is a rename within one file system, so it is atomic; files and the directory are
//! fsynced before a seal or a checkpoint counts.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio::io::AsyncSeekExt;

use super::{BlobReader, BlobStore, BlobWriter};

pub struct LocalDirectory {
    incoming: PathBuf,
    sealed: PathBuf,
}

impl LocalDirectory {
    pub fn open(root: PathBuf) -> io::Result<Self> {
        let incoming = root.join("incoming");
        let sealed = root.join("sealed");
        fs::create_dir_all(&incoming)?;
        fs::create_dir_all(&sealed)?;
        Ok(Self { incoming, sealed })
    }

    fn incoming_path(&self, key: &str) -> io::Result<PathBuf> {
        Ok(self.incoming.join(checked_key(key)?))
    }

    fn sealed_path(&self, key: &str) -> io::Result<PathBuf> {
        Ok(self.sealed.join(checked_key(key)?))
    }
}

/// Keys are server-made (hex), but a path must never come from anything else.
fn checked_key(key: &str) -> io::Result<&str> {
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad blob key {key:?}"),
        ));
    }
    Ok(key)
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|err| io::Error::other(format!("blob store task failed: {err}")))?
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_present(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

#[async_trait]
impl BlobStore for LocalDirectory {
    async fn writer(&self, key: &str) -> io::Result<Box<dyn BlobWriter>> {
        let incoming = self.incoming_path(key)?;
        let sealed = self.sealed_path(key)?;
        let file = blocking(move || {
            if !incoming.exists() && sealed.exists() {
                fs::rename(&sealed, &incoming)?;
            }
            OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&incoming)
        })
        .await?;
        Ok(Box::new(LocalWriter {
            file: Arc::new(file),
        }))
    }

    async fn digest(&self, key: &str, len: u64) -> io::Result<String> {
        let path = self.incoming_path(key)?;
        blocking(move || {
            let mut reader = File::open(path)?.take(len);
            let mut hasher = Sha256::new();
            let mut buffer = vec![0; 1024 * 1024];
            let mut read_total = 0u64;
            loop {
                let read = reader.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                hasher.update(&buffer[..read]);
                read_total += read as u64;
            }
            if read_total < len {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("blob holds {read_total} bytes, {len} expected"),
                ));
            }
            Ok(hex::encode(hasher.finalize()))
        })
        .await
    }

    async fn seal(&self, key: &str, len: u64) -> io::Result<()> {
        let incoming = self.incoming_path(key)?;
        let sealed = self.sealed_path(key)?;
        let sealed_dir = self.sealed.clone();
        let incoming_dir = self.incoming.clone();
        blocking(move || {
            if !incoming.exists() && sealed.exists() {
                // Sealed already (a second call finishing the same upload).
                return Ok(());
            }
            let file = OpenOptions::new().write(true).open(&incoming)?;
            // Bytes past the declared size cannot be there (parts past it are refused), but a
            // sealed blob must be exactly the content.
            file.set_len(len)?;
            file.sync_all()?;
            fs::rename(&incoming, &sealed)?;
            sync_dir(&sealed_dir)?;
            sync_dir(&incoming_dir)
        })
        .await
    }

    async fn discard(&self, key: &str) -> io::Result<()> {
        let path = self.incoming_path(key)?;
        blocking(move || remove_if_present(&path)).await
    }

    async fn open(&self, key: &str, offset: u64) -> io::Result<BlobReader> {
        let mut file = tokio::fs::File::open(self.sealed_path(key)?).await?;
        file.seek(io::SeekFrom::Start(offset)).await?;
        Ok(Box::new(file))
    }

    async fn remove(&self, key: &str) -> io::Result<()> {
        let path = self.sealed_path(key)?;
        blocking(move || remove_if_present(&path)).await
    }
}

struct LocalWriter {
    file: Arc<File>,
}

#[async_trait]
impl BlobWriter for LocalWriter {
    async fn write_at(&mut self, offset: u64, data: Vec<u8>) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        blocking(move || file.write_all_at(&data, offset)).await
    }

    async fn sync(&mut self) -> io::Result<()> {
        let file = Arc::clone(&self.file);
        blocking(move || file.sync_data()).await
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;

    use super::*;

    async fn read_all(store: &LocalDirectory, key: &str, offset: u64) -> Vec<u8> {
        let mut content = Vec::new();
        store
            .open(key, offset)
            .await
            .unwrap()
            .read_to_end(&mut content)
            .await
            .unwrap();
        content
    }

    #[tokio::test]
    async fn content_written_at_offsets_is_sealed_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::open(dir.path().to_path_buf()).unwrap();
        let mut writer = store.writer("k1").await.unwrap();
        writer.write_at(0, b"hello ".to_vec()).await.unwrap();
        writer.write_at(6, b"world".to_vec()).await.unwrap();
        writer.sync().await.unwrap();
        assert!(store.open("k1", 0).await.is_err(), "not sealed yet");
        assert_eq!(
            store.digest("k1", 11).await.unwrap(),
            hex::encode(Sha256::digest(b"hello world"))
        );
        assert!(store.digest("k1", 12).await.is_err(), "shorter than asked");
        store.seal("k1", 11).await.unwrap();
        store.seal("k1", 11).await.unwrap();
        assert_eq!(read_all(&store, "k1", 0).await, b"hello world");
        assert_eq!(read_all(&store, "k1", 6).await, b"world");
        store.remove("k1").await.unwrap();
        assert!(store.open("k1", 0).await.is_err());
    }

    #[tokio::test]
    async fn a_sealed_blob_whose_completion_was_lost_is_unsealed_to_resume() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::open(dir.path().to_path_buf()).unwrap();
        let mut writer = store.writer("k2").await.unwrap();
        writer.write_at(0, b"abcdef".to_vec()).await.unwrap();
        store.seal("k2", 6).await.unwrap();
        // The database still says 3 bytes: the client resumes at 3.
        let mut writer = store.writer("k2").await.unwrap();
        writer.write_at(3, b"def".to_vec()).await.unwrap();
        assert_eq!(
            store.digest("k2", 6).await.unwrap(),
            hex::encode(Sha256::digest(b"abcdef"))
        );
    }

    #[tokio::test]
    async fn keys_never_become_paths_outside_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalDirectory::open(dir.path().to_path_buf()).unwrap();
        for key in ["", "../x", "a/b", "."] {
            assert!(store.writer(key).await.is_err(), "{key:?}");
        }
    }
}
