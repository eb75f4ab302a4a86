// The page the browser test loads (bundled with esbuild): an outbox over gRPC-Web with its queue
// in IndexedDB. The query names the server, the key and a tag that keeps this run's data apart.
import { timestampNow } from "@bufbuild/protobuf/wkt";

import { fileContent } from "./content.js";
import { browserConnectivity, createWebTransport, DexieOutboxStore, Outbox, type OutboxState } from "retryd-client/web";

declare global {
  interface Window {
    outboxState: () => OutboxState;
    queueWork: () => Promise<void>;
  }
}

const query = new URLSearchParams(location.search);
const tag = query.get("tag")!;
const transport = createWebTransport({ baseUrl: query.get("server")!, apiKey: query.get("key")! });
const outbox = new Outbox({
  transport,
  store: new DexieOutboxStore(`outbox-${tag}`),
  connectivity: browserConnectivity(),
  backoff: { baseMs: 200, maxMs: 2000 },
  partSize: 1000,
});

window.outboxState = () => outbox.getState();
window.queueWork = async () => {
  for (const index of [0, 1]) {
    await outbox.enqueue({
      kind: "upload",
      file: { uploadId: `${tag}-file-${index}`, fileName: `f${index}.txt`, owner: tag, content: new Blob([fileContent(tag, index)]) },
    });
  }
  await outbox.enqueue({
    kind: "syncPush",
    request: {
      collection: tag,
      clientId: "browser-1",
      changes: [{ changeId: `${tag}-change-1`, recordId: "note-1", updatedAt: timestampNow(), payload: new TextEncoder().encode("from the browser") }],
    },
  });
};
document.body.dataset.ready = "true";
