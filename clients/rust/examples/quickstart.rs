use retryd_client::auth::ApiKey;
use retryd_client::tonic::transport::Endpoint;
use retryd_client::v1::chunk_queue_client::ChunkQueueClient;
use retryd_client::v1::{ChunkInput, CreateJobRequest, JobProgress, WatchJobRequest};
use retryd_client::worker::{run_chunks, Outcome, WorkerOptions};

/// Creates a job of three chunks, works it, and watches its progress until it is final.
pub async fn quickstart(
    url: String,
    api_key: Option<String>,
) -> Result<JobProgress, Box<dyn std::error::Error>> {
    let channel = Endpoint::from_shared(url)?.connect().await?;
    // Optional key: a server with no keys serves loopback only and needs none.
    let key = api_key.as_deref().map(ApiKey::new).transpose()?;
    let mut queue = ChunkQueueClient::with_interceptor(channel.clone(), move |request| {
        Ok(match &key {
            Some(key) => key.authorize(request),
            None => request,
        })
    });

    // Create a job of three chunks; its id makes the call idempotent.
    let job = queue
        .create_job(CreateJobRequest {
            job_id: format!("quickstart-{}", std::process::id()),
            queue: "quickstart".into(),
            chunks: ["one", "two", "three"]
                .map(|word| ChunkInput {
                    payload: word.into(),
                })
                .into(),
            ..Default::default()
        })
        .await?
        .into_inner();

    // Work it: a function per chunk (here it upper-cases the payload), until stopped.
    let mut options = WorkerOptions::new("quickstart", "quickstart-worker");
    options.api_key = api_key.as_deref().map(ApiKey::new).transpose()?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let work = |chunk: retryd_client::v1::LeasedChunk| async move {
        Outcome::Complete(chunk.payload.to_ascii_uppercase())
    };
    let worker = tokio::spawn(run_chunks(channel, options, work, async {
        let _ = stopped.await;
    }));

    // Watch its progress; the stream ends when the job is final.
    let mut progress = queue
        .watch_job(WatchJobRequest { job_id: job.job_id })
        .await?
        .into_inner();
    let mut last = None;
    while let Some(update) = progress.message().await? {
        let status = update.overall_status().as_str_name();
        println!(
            "{}: {}% {status}",
            update.job_id, update.progress_percentage
        );
        last = Some(update);
    }
    let _ = stop.send(());
    worker.await??;
    Ok(last.ok_or("the watch ended without progress")?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("RETRYD_URL").unwrap_or_else(|_| "http://127.0.0.1:50051".into());
    quickstart(url, std::env::var("RETRYD_API_KEY").ok()).await?;
    Ok(())
}
