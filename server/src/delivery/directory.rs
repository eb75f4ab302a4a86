//! Delivery into a directory: the file appears under its name complete or not at all (written
//! beside it under a temporary name, flushed, then renamed).

use std::path::Path;

use tokio::io::AsyncWriteExt;

use crate::blobs::BlobReader;

pub async fn copy_into(dir: &Path, file_name: &str, mut content: BlobReader) -> Result<(), String> {
    let shown = dir.display();
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(|err| format!("cannot create {shown}: {err}"))?;
    let target = dir.join(file_name);
    let temporary = dir.join(format!(
        ".{file_name}.{}.partial",
        uuid::Uuid::new_v4().simple()
    ));
    let copied = async {
        let mut file = tokio::fs::File::create(&temporary).await?;
        tokio::io::copy(&mut content, &mut file).await?;
        file.flush().await?;
        file.sync_all().await?;
        tokio::fs::rename(&temporary, &target).await?;
        tokio::fs::File::open(dir).await?.sync_all().await
    }
    .await;
    if let Err(err) = copied {
        let _ = tokio::fs::remove_file(&temporary).await;
        return Err(format!("cannot write {}: {err}", target.display()));
    }
    Ok(())
}
