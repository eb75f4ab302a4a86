import { complete, createNodeTransport, createRetrydClients, JobStatus, runChunks } from "retryd-client/node";

const transport = createNodeTransport({
  baseUrl: process.env.RETRYD_URL ?? "http://127.0.0.1:50051",
  // Optional: a server with no keys serves loopback only and needs none.
  apiKey: process.env.RETRYD_API_KEY,
});
const { chunkQueue } = createRetrydClients(transport);
const text = new TextEncoder();

// Create a job of three chunks; its id makes the call idempotent.
const job = await chunkQueue.createJob({
  jobId: `quickstart-${Date.now()}`,
  queue: "quickstart",
  chunks: ["one", "two", "three"].map((word) => ({ payload: text.encode(word) })),
});

// Work it: a function per chunk (here it upper-cases the payload), until stopped.
const stop = new AbortController();
const options = { queue: "quickstart", workerId: "quickstart-worker", signal: stop.signal };
const worker = runChunks(transport, options, (chunk) =>
  complete(text.encode(new TextDecoder().decode(chunk.payload).toUpperCase())),
);

// Watch its progress; the stream ends when the job is final.
for await (const progress of chunkQueue.watchJob({ jobId: job.jobId })) {
  console.log(`${progress.jobId}: ${progress.progressPercentage}% ${JobStatus[progress.overallStatus]}`);
}
stop.abort();
await worker;
