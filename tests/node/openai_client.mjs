// The official Node `openai` package (v4) against a running `embedtag serve`, as a catalogue app calls it.
// Run by tests/test_node_client.py, which starts the server and says what to expect (environment):
//   OPENAI_NODE_DIR   a folder with node_modules/openai (.ci/run installs it in a temp folder)
//   EMBEDTAG_BASE_URL the server's /v1 URL;  EMBEDTAG_API_KEY its key
//   EMBEDTAG_MODEL    the model id /v1/models must list
//   EMBEDTAG_PROMPT   a file holding the seed tagging prompt;  EMBEDTAG_EXPECTED  the exact answer
// Prints "ok STEP" per step; exits 1 at the first step that differs.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const fail = (step, message) => {
  console.error(`FAIL ${step}: ${message}`);
  process.exit(1);
};
const same = (step, got, want) => {
  if (got !== want) fail(step, `got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
};

// resolved from the given folder, not from this file's: the package is not in the repository
const entry = createRequire(join(env("OPENAI_NODE_DIR"), "package.json")).resolve("openai");
const { default: OpenAI } = await import(pathToFileURL(entry).href);
const { VERSION: version } = createRequire(entry)("./version.js");
if (!version.startsWith("4.")) fail("version", `openai ${version}; this test is for v4`);
console.log(`openai ${version}`);

const client = new OpenAI({ baseURL: env("EMBEDTAG_BASE_URL"), apiKey: env("EMBEDTAG_API_KEY"), maxRetries: 0 });
const prompt = readFileSync(env("EMBEDTAG_PROMPT"), "utf8");
const expected = env("EMBEDTAG_EXPECTED");
const messages = [{ role: "user", content: prompt }];

try {
  // 1. models: the one model the server serves
  const models = [];
  for await (const model of client.models.list()) models.push(model.id);
  same("models", JSON.stringify(models), JSON.stringify([env("EMBEDTAG_MODEL")]));
  console.log("ok models");

  // 2. the seed prompt: the message content is the expected JSON, exactly
  const completion = await client.chat.completions.create({ model: "gpt-4o-mini", messages });
  same("prompt", completion.choices[0].message.content, expected);
  same("prompt finish_reason", completion.choices[0].finish_reason, "stop");
  console.log("ok prompt");

  // 3. streaming: the deltas add up to the same content, and the stream ends with "stop"
  const stream = await client.chat.completions.create({ model: "gpt-4o-mini", messages, stream: true });
  let streamed = "";
  let finish = null;
  for await (const chunk of stream) {
    for (const choice of chunk.choices) {
      streamed += choice.delta?.content ?? "";
      finish = choice.finish_reason ?? finish;
    }
  }
  same("stream", streamed, expected);
  same("stream finish_reason", finish, "stop");
  console.log("ok stream");
} catch (error) {
  fail("request", error?.stack ?? String(error));
}

// 4. a prompt that is not the tagging prompt: a 400 the client raises as BadRequestError, saying why
try {
  await client.chat.completions.create({
    model: "gpt-4o-mini", messages: [{ role: "user", content: "Write a haiku about the sea." }],
  });
  fail("error", "a non-tagging prompt was answered");
} catch (error) {
  if (!(error instanceof OpenAI.BadRequestError)) fail("error", `not a BadRequestError: ${error?.stack ?? error}`);
  same("error status", error.status, 400);
  if (!error.message.includes("tagging prompt")) fail("error", `the message does not say why: ${error.message}`);
  console.log("ok error");
}
