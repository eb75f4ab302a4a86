// The outbox in a real browser: headless Chromium (Debian's, driven by playwright-core) loads a
// page that uses the client over gRPC-Web against the real server. Offline, the page queues two
// uploads and a sync push (pendingCount 3), keeps them in IndexedDB across a reload, and once
// back online flushes them by itself; the server then holds exactly one copy of each.
// Without Chromium the test fails: `bash .ci/run` installs it.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

import { build } from "esbuild";
import { chromium, type Page } from "playwright-core";
import { sha256Hex, UploadStatus } from "retryd-client/node";

import { fileContent } from "./browser/content.js";
import { clientsAs, download, keyFor, serverUrl, unique } from "./support.js";

const packageRoot = join(dirname(fileURLToPath(import.meta.url)), "..", "..");

/** Debian's Chromium (CHROMIUM_PATH overrides): the binary itself, not its wrapper script. */
function chromiumPath(): string {
  const candidates = [process.env.CHROMIUM_PATH, "/usr/lib/chromium/chromium", "/usr/bin/chromium"];
  const found = candidates.find((path) => path && existsSync(path));
  if (!found) throw new Error("Chromium is missing: `apt-get install chromium` (bash .ci/run does)");
  return found;
}

/** The page and its bundle (the client built for browsers by esbuild), by path. */
async function pageFiles(): Promise<(path: string) => { contentType: string; body: string | Uint8Array }> {
  const bundle = await build({
    entryPoints: [join(packageRoot, "test", "browser", "page.ts")],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    logLevel: "silent",
  });
  const script = bundle.outputFiles[0]!.contents;
  const html = '<!doctype html><meta charset="utf-8"><title>outbox</title><body><script type="module" src="/page.js"></script>';
  return (path) =>
    path.startsWith("/page.js") ? { contentType: "text/javascript", body: script } : { contentType: "text/html", body: html };
}

/** A tiny static server for the page. */
async function servePage(): Promise<{ server: Server; url: string; files: Awaited<ReturnType<typeof pageFiles>> }> {
  const files = await pageFiles();
  const server = createServer((request, response) => {
    const { contentType, body } = files(request.url ?? "/");
    response.writeHead(200, { "content-type": contentType });
    response.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, files };
}

const state = (page: Page) => page.evaluate(() => window.outboxState());

test("the browser outbox queues offline, survives a reload and flushes once back online", { timeout: 60_000 }, async () => {
  const { server, url, files } = await servePage();
  const browser = await chromium.launch({
    executablePath: chromiumPath(),
    // The page handed over by the test (below) has no address of its own, so Chromium counts it
    // as public and would ask permission for its calls to the server on loopback; a page
    // from a service worker's cache keeps its origin's address and is not asked.
    args: ["--no-sandbox", "--disable-features=LocalNetworkAccessChecks"],
  });
  try {
    const context = await browser.newContext();
    const page = await context.newPage();
    if (process.env.DEBUG_BROWSER) {
      page.on("console", (message) => console.error("page:", message.text()));
      page.on("requestfailed", (request) => console.error("failed:", request.url(), request.failure()?.errorText));
    }
    const tag = unique("browser");
    const query = new URLSearchParams({ server: serverUrl(), key: keyFor("admin"), tag });
    await page.goto(`${url}/?${query}`);
    await page.waitForSelector("body[data-ready=true]", { state: "attached" });

    await context.setOffline(true);
    await page.evaluate(() => window.queueWork());
    await page.waitForFunction(() => !window.outboxState().syncing && window.outboxState().pendingCount === 3);
    assert.equal((await state(page)).online, false);

    // Reload with the network off. An offline-capable app has its shell cached (a service
    // worker); here the test hands Chromium the same page for its origin. The queue itself must
    // come back from IndexedDB.
    await context.route(`${url}/**`, (route) => {
      const { contentType, body } = files(new URL(route.request().url()).pathname);
      return route.fulfill({ status: 200, contentType, body: Buffer.from(body) });
    });
    await page.reload();
    await page.waitForSelector("body[data-ready=true]", { state: "attached" });
    await page.waitForFunction(() => window.outboxState().pendingCount === 3);
    assert.equal((await state(page)).online, false);

    // Back online: the page flushes by itself.
    await context.setOffline(false);
    await page
      .waitForFunction(() => {
        const now = window.outboxState();
        return now.online && !now.syncing && now.pendingCount === 0;
      })
      .catch(async (error: Error) => assert.fail(`${error.message}; the outbox: ${JSON.stringify(await state(page))}`));

    const clients = clientsAs("admin");
    const { uploads } = await clients.uploadRetry.listUploads({ owner: tag });
    assert.deepEqual(uploads.map((upload) => upload.uploadId).sort(), [`${tag}-file-0`, `${tag}-file-1`]);
    for (const upload of uploads) {
      const expected = fileContent(tag, Number(upload.uploadId.at(-1)));
      assert.equal(upload.status, UploadStatus.STORED);
      assert.equal(upload.sha256, await sha256Hex(expected));
      assert.deepEqual(await download(clients, upload.uploadId), expected);
    }
    const { records } = await clients.syncRetry.pullChanges({ collection: tag });
    assert.deepEqual(
      records.map((record) => [record.recordId, record.version, record.changedBy, new TextDecoder().decode(record.payload)]),
      [["note-1", 1n, "browser-1", "from the browser"]],
    );
  } finally {
    await browser.close();
    server.close();
  }
});
