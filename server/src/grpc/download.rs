//! Streams a blob to a client in parts: the one loop behind DownloadUpload and DownloadImage.

use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::chunk_queue::ResponseStream;
use crate::blobs::BlobReader;

/// Reads `reader` in parts of at most `part_bytes` and sends each as `to_message(offset, data)`,
/// `offset` counting on from `first_offset`; a read error ends the stream with UNAVAILABLE.
/// Reading stops as soon as the client leaves.
pub(super) fn blob_stream<T: Send + 'static>(
    mut reader: BlobReader,
    first_offset: u64,
    part_bytes: usize,
    to_message: impl Fn(u64, Vec<u8>) -> T + Send + 'static,
) -> ResponseStream<T> {
    let (sender, receiver) = mpsc::channel(4);
    tokio::spawn(async move {
        let mut offset = first_offset;
        loop {
            let mut data = vec![0; part_bytes];
            let read = match reader.read(&mut data).await {
                Ok(0) => return,
                Ok(read) => read,
                Err(err) => {
                    let _ = sender
                        .send(Err(Status::unavailable(format!("blob store: {err}"))))
                        .await;
                    return;
                }
            };
            data.truncate(read);
            let part = to_message(offset, data);
            offset += read as u64;
            if sender.send(Ok(part)).await.is_err() {
                return;
            }
        }
    });
    Box::pin(ReceiverStream::new(receiver))
}
