// The README's example is examples/quickstart.ts, word for word, and it runs against the server.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFile } from "node:fs/promises";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import { keyFor, serverUrl } from "./support.js";

const packageDir = fileURLToPath(new URL("../../", import.meta.url));

test("the README shows the quickstart example as it is", async () => {
  const readme = await readFile(`${packageDir}README.md`, "utf8");
  const example = await readFile(`${packageDir}examples/quickstart.ts`, "utf8");
  const shown = /<!-- example:start -->\n```ts\n([\s\S]*?)```\n<!-- example:end -->/.exec(readme);
  assert.ok(shown, "README.md has the example between its markers");
  assert.equal(shown[1], example);
});

test("the quickstart example creates, works and watches a job to 100 %", { timeout: 60_000 }, async () => {
  const { stdout } = await promisify(execFile)(process.execPath, [`${packageDir}build-test/examples/quickstart.js`], {
    env: { ...process.env, RETRYD_URL: serverUrl(), RETRYD_API_KEY: keyFor("admin") },
    timeout: 50_000,
  });
  const lines = stdout.trim().split("\n");
  assert.match(lines.at(-1)!, /^quickstart-\d+: 100% COMPLETED$/);
});
