// The README's examples are examples/quickstart.ts and examples/offline.ts, word for word, and
// they run against the server.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { keyFor, serverUrl } from "./support.js";

const packageDir = fileURLToPath(new URL("../../", import.meta.url));

for (const [marker, file] of [
  ["example", "quickstart"],
  ["offline-example", "offline"],
]) {
  test(`the README shows examples/${file}.ts as it is`, async () => {
    const readme = await readFile(`${packageDir}README.md`, "utf8");
    const example = await readFile(`${packageDir}examples/${file}.ts`, "utf8");
    const shown = new RegExp(`<!-- ${marker}:start -->\\n\`\`\`ts\\n([\\s\\S]*?)\`\`\`\\n<!-- ${marker}:end -->`).exec(readme);
    assert.ok(shown, `README.md has examples/${file}.ts between its markers`);
    assert.equal(shown[1], example);
  });
}

test("the quickstart example creates, works and watches a job to 100 %", { timeout: 60_000 }, async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [`${packageDir}build-test/examples/quickstart.js`], {
    env: { ...process.env, RETRYD_URL: serverUrl(), RETRYD_API_KEY: keyFor("admin") },
    timeout: 50_000,
  });
  const lines = stdout.trim().split("\n");
  assert.match(lines.at(-1)!, /^quickstart-\d+: 100% COMPLETED$/);
});

test("the offline example uploads a file, then flushes its outbox", { timeout: 60_000 }, async () => {
  const outboxFile = join(await mkdtemp(join(tmpdir(), "retryd-example-")), "outbox.json");
  const { stdout } = await promisify(execFile)(process.execPath, [`${packageDir}build-test/examples/offline.js`], {
    env: { ...process.env, RETRYD_URL: serverUrl(), RETRYD_API_KEY: keyFor("admin"), OUTBOX_FILE: outboxFile },
    timeout: 50_000,
  });
  const lines = stdout.trim().split("\n");
  assert.match(lines[0]!, /^uploaded report-\d+: 18000 bytes, sha256 [0-9a-f]{12}…$/);
  assert.equal(lines.at(-1), "online=true syncing=false pending=0");
  assert.ok(lines.some((line) => /pending=[12]$/.test(line)), stdout);
  assert.deepEqual(JSON.parse(await readFile(outboxFile, "utf8")), []);
});
