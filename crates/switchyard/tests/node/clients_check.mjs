// Third-party Node.js clients, unchanged, against the gateway and every provider kind behind
// it: the Vercel AI SDK (its OpenAI provider over the Responses API and over Chat Completions,
// its Anthropic provider, its OpenAI-compatible provider) and OpenAI's and Anthropic's own
// SDKs. Usage: node clients_check.mjs GATEWAY_URL KEY ALIAS...
import { generateText, streamText, generateObject, tool, stepCountIs, embed } from "ai";
import { createOpenAI } from "@ai-sdk/openai";
import { createAnthropic } from "@ai-sdk/anthropic";
import { createOpenAICompatible } from "@ai-sdk/openai-compatible";
import OpenAI from "openai";
import Anthropic from "@anthropic-ai/sdk";
import { z } from "zod";

globalThis.AI_SDK_LOG_WARNINGS = false;
const [gateway, key, ...aliases] = process.argv.slice(2);
const openai = createOpenAI({ baseURL: `${gateway}/v1`, apiKey: key });
const anthropic = createAnthropic({ baseURL: `${gateway}/v1`, apiKey: key });
const compatible = createOpenAICompatible({
  name: "switchyard",
  baseURL: `${gateway}/v1`,
  apiKey: key,
  includeUsage: true,
  supportsStructuredOutputs: true,
});
const openaiSdk = new OpenAI({ baseURL: `${gateway}/v1`, apiKey: key });
const anthropicSdk = new Anthropic({ baseURL: gateway, apiKey: key });

let passed = 0;
let failed = 0;
async function check(name, run) {
  try {
    await run();
    passed++;
    console.log(`ok   ${name}`);
  } catch (e) {
    failed++;
    console.log(`FAIL ${name}: ${String(e).slice(0, 600)} ${e.responseBody ? e.responseBody.slice(0, 400) : ""}`);
  }
}
function expect(condition, what) {
  if (!condition) throw new Error(`expected ${what}`);
}

const weather = tool({
  description: "Get the weather of a city",
  inputSchema: z.object({ city: z.string() }),
  execute: async ({ city }) => ({ city, celsius: 21 }),
});
const models = {
  "ai-sdk openai responses": (a) => openai.responses(a),
  "ai-sdk openai chat": (a) => openai.chat(a),
  "ai-sdk anthropic": (a) => anthropic(a),
  "ai-sdk openai-compatible": (a) => compatible(a),
};

for (const alias of aliases) {
  for (const [client, model] of Object.entries(models)) {
    await check(`${client} generateText [${alias}]`, async () => {
      const r = await generateText({ model: model(alias), prompt: "Hello there", maxOutputTokens: 200 });
      expect(r.text.includes("Hello there"), `the answer, got ${r.text}`);
      expect(r.finishReason === "stop", `stop, got ${r.finishReason}`);
      expect(r.usage.inputTokens > 0 && r.usage.outputTokens > 0, `usage, got ${JSON.stringify(r.usage)}`);
    });
    await check(`${client} streamText [${alias}]`, async () => {
      const r = streamText({ model: model(alias), prompt: "Hello there", maxOutputTokens: 200, onError: ({ error }) => { throw error; } });
      let text = "";
      for await (const part of r.textStream) text += part;
      expect(text.includes("Hello there"), `the streamed answer, got ${text}`);
      expect((await r.finishReason) === "stop", "stop");
      expect((await r.usage).outputTokens > 0, "usage");
    });
    for (const streamed of [false, true]) {
      await check(`${client} tool loop${streamed ? ", streamed" : ""} [${alias}]`, async () => {
        const options = { model: model(alias), prompt: "Weather in Paris?", tools: { weather }, stopWhen: stepCountIs(3), maxOutputTokens: 200 };
        let steps;
        if (streamed) {
          const r = streamText({ ...options, onError: ({ error }) => { throw error; } });
          for await (const part of r.fullStream) if (part.type === "error") throw part.error;
          steps = await r.steps;
        } else {
          steps = (await generateText(options)).steps;
        }
        expect(steps.length === 2, `two steps, got ${steps.length}`);
        expect(steps[0].toolCalls[0]?.toolName === "weather", "a weather call");
        expect(steps[1].text.includes("celsius"), `the tool's result in the answer, got ${steps[1].text}`);
      });
    }
    await check(`${client} generateObject [${alias}]`, async () => {
      const r = await generateObject({ model: model(alias), schema: z.object({ name: z.string(), age: z.number() }), prompt: "A person", maxOutputTokens: 200 });
      expect(typeof r.object.name === "string" && typeof r.object.age === "number", JSON.stringify(r.object));
    });
  }

  await check(`openai sdk chat stream [${alias}]`, async () => {
    const stream = await openaiSdk.chat.completions.create({ model: alias, stream: true, stream_options: { include_usage: true }, messages: [{ role: "user", content: "Hello there" }] });
    let text = "";
    let usage = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? "";
      usage = chunk.usage ?? usage;
    }
    expect(text.includes("Hello there") && usage?.completion_tokens > 0, `text and usage, got ${text} ${JSON.stringify(usage)}`);
  });
  await check(`openai sdk responses stream [${alias}]`, async () => {
    const stream = openaiSdk.responses.stream({ model: alias, input: "Hello there" });
    const response = await stream.finalResponse();
    expect(response.status === "completed" && response.output_text.includes("Hello there"), JSON.stringify(response).slice(0, 300));
  });
  await check(`anthropic sdk messages stream [${alias}]`, async () => {
    const stream = anthropicSdk.messages.stream({ model: alias, max_tokens: 200, messages: [{ role: "user", content: "Hello there" }] });
    const message = await stream.finalMessage();
    expect(message.stop_reason === "end_turn" && message.content[0].text.includes("Hello there"), JSON.stringify(message).slice(0, 300));
  });
}

await check("ai-sdk embed", async () => {
  const r = await embed({ model: openai.textEmbeddingModel("embed"), value: "hello" });
  expect(r.embedding.length > 0, "a vector");
});

console.log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
