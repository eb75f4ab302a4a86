import { timestampNow } from "@bufbuild/protobuf/wkt";
import {
  createNodeTransport,
  healthProbe,
  JsonFileOutboxStore,
  Outbox,
  uploadFile,
} from "retryd-client/node";

const transport = createNodeTransport({
  baseUrl: process.env.RETRYD_URL ?? "http://127.0.0.1:50051",
  apiKey: process.env.RETRYD_API_KEY,
});
const run = Date.now();

// Straight upload: resumes from where the server has the file if it was cut before.
const report = new TextEncoder().encode("quarterly numbers\n".repeat(1000));
const stored = await uploadFile(transport, {
  uploadId: `report-${run}`,
  owner: "device-7",
  fileName: "report.txt",
  content: report,
});
console.log(`uploaded ${stored.uploadId}: ${stored.receivedBytes} bytes, sha256 ${stored.sha256.slice(0, 12)}…`);

// The outbox: kept in a file until the server confirmed each operation, sent when online.
const outbox = new Outbox({
  transport,
  store: new JsonFileOutboxStore(process.env.OUTBOX_FILE ?? "outbox.json"),
  connectivity: healthProbe(transport),
});
outbox.subscribe(({ online, syncing, pendingCount }) =>
  console.log(`online=${online} syncing=${syncing} pending=${pendingCount}`),
);
await outbox.enqueue({
  kind: "upload",
  file: { uploadId: `photo-${run}`, owner: "device-7", fileName: "photo.jpg", content: new Uint8Array(2048) },
});
await outbox.enqueue({
  kind: "syncPush",
  request: {
    collection: "notes",
    clientId: "device-7",
    changes: [
      {
        changeId: `note-edit-${run}`,
        recordId: `note-${run}`,
        updatedAt: timestampNow(),
        payload: new TextEncoder().encode("buy milk"),
      },
    ],
  },
});
await outbox.flush();
outbox.close();
