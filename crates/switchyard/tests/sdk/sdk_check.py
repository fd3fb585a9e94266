"""Drives a running Switchyard gateway with the official client libraries, unchanged.

Usage: sdk_check.py BASE_URL API_KEY ALIAS [ALIAS ...]

For every alias it runs plain, streaming, tool-calling and document (PDF) conversations (the
OpenAI ones through both Chat Completions and the Responses API) (and,
with the Anthropic provider, answers citing a document and search results, and a web search
run by the provider's server tool) through
the `openai` and `anthropic` SDKs (and a plain and a tool call through `langchain-openai`), checks that usage is
reported, and checks the SDKs' error classes for a bad key and an unknown model. Prints one
line per check and a closing 'N passed, M failed' line; exits non-zero on any failure.
"""

import base64
import json
import sys
import traceback

import anthropic
import openai

BASE, KEY, ALIASES = sys.argv[1], sys.argv[2], sys.argv[3:]
EMBEDDING_ALIAS = "embed"

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["c", "f"]}},
            "required": ["city"],
        },
    },
}
ANTHROPIC_WEATHER_TOOL = {
    "name": "get_weather",
    "description": "Current weather in a city",
    "input_schema": WEATHER_TOOL["function"]["parameters"],
}

# A one-page PDF's bytes, enough for the providers' document forms.
PDF_BASE64 = base64.b64encode(b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n").decode()

passed, failed = 0, 0


def check(name):
    def wrap(fn):
        global passed, failed
        try:
            fn()
            passed += 1
            print(f"ok   {name}", flush=True)
        except Exception:  # noqa: BLE001 - every failure is reported, none stops the run
            failed += 1
            print(f"FAIL {name}", flush=True)
            traceback.print_exc()
        return fn

    return wrap


oa = openai.OpenAI(base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=30)
an = anthropic.Anthropic(base_url=BASE, api_key=KEY, max_retries=0, timeout=30)


def run_alias(alias):
    @check(f"openai plain [{alias}]")
    def _():
        r = oa.chat.completions.create(
            model=alias, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
        )
        assert r.choices[0].message.content, r
        assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason
        assert r.model == alias, r.model
        assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0, r.usage
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens

    @check(f"openai stream with usage [{alias}]")
    def _():
        text, usage, finish = "", None, None
        stream = oa.chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "Tell me a story"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        for chunk in stream:
            if chunk.usage:
                usage = chunk.usage
            for c in chunk.choices:
                text += c.delta.content or ""
                finish = c.finish_reason or finish
        assert text, "no streamed text"
        assert finish == "stop", finish
        assert usage and usage.prompt_tokens > 0 and usage.completion_tokens > 0, usage

    # Only OpenAI's format has log probabilities; the other providers' answers carry none.
    openai_form = alias in ("openai", "compat", "azure")

    @check(f"openai log probabilities, whole and through the stream helper [{alias}]")
    def _():
        messages = [{"role": "user", "content": "Hello there"}]
        r = oa.chat.completions.create(model=alias, messages=messages, logprobs=True, top_logprobs=2)
        text, logprobs = r.choices[0].message.content, r.choices[0].logprobs
        if not openai_form:
            assert logprobs is None, logprobs
            return
        assert "".join(t.token for t in logprobs.content) == text, logprobs
        assert all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token for t in logprobs.content)
        assert all(bytes(t.bytes) == t.token.encode() for t in logprobs.content)
        # The SDK's `stream()` gathers each chunk's log probabilities into the final answer.
        with oa.chat.completions.stream(model=alias, messages=messages, logprobs=True, top_logprobs=2) as stream:
            final = stream.get_final_completion()
        streamed = final.choices[0].logprobs.content
        assert final.choices[0].message.content == text, final
        assert [(t.token, t.logprob) for t in streamed] == [(t.token, t.logprob) for t in logprobs.content]

    @check(f"openai several choices (n) [{alias}]")
    def _():
        messages = [{"role": "user", "content": "Name a colour"}]
        if alias in ("anthropic", "bedrock"):
            # Claude answers once per request: the gateway says so rather than answer once.
            try:
                oa.chat.completions.create(model=alias, messages=messages, n=2)
            except openai.BadRequestError as e:
                assert "several choices" in str(e), e
            else:
                raise AssertionError("n=2 was answered")
            return
        r = oa.chat.completions.create(model=alias, messages=messages, n=2)
        assert [c.index for c in r.choices] == [0, 1], r.choices
        assert r.choices[0].message.content != r.choices[1].message.content, r.choices

    @check(f"openai max_tokens gives finish_reason length [{alias}]")
    def _():
        r = oa.chat.completions.create(
            model=alias, messages=[{"role": "user", "content": "Write a long essay"}], max_tokens=3
        )
        assert r.choices[0].finish_reason == "length", r.choices[0].finish_reason
        assert r.usage.completion_tokens <= 3, r.usage

    @check(f"openai tool round trip [{alias}]")
    def _():
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        r = oa.chat.completions.create(model=alias, messages=messages, tools=[WEATHER_TOOL])
        msg = r.choices[0].message
        assert r.choices[0].finish_reason == "tool_calls", r.choices[0].finish_reason
        call = msg.tool_calls[0]
        assert call.function.name == "get_weather"
        args = json.loads(call.function.arguments)
        assert "city" in args, args
        messages.append(msg.model_dump(exclude_none=True))
        messages.append({"role": "tool", "tool_call_id": call.id, "content": "18 degrees and sunny"})
        r2 = oa.chat.completions.create(model=alias, messages=messages, tools=[WEATHER_TOOL])
        assert r2.choices[0].finish_reason == "stop", r2.choices[0].finish_reason
        assert "18 degrees" in r2.choices[0].message.content, r2.choices[0].message.content

    @check(f"openai streamed tool call [{alias}]")
    def _():
        calls = {}
        finish = None
        stream = oa.chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
            tools=[WEATHER_TOOL],
            tool_choice="required",
            stream=True,
        )
        for chunk in stream:
            for c in chunk.choices:
                finish = c.finish_reason or finish
                for tc in c.delta.tool_calls or []:
                    entry = calls.setdefault(tc.index, {"id": None, "name": "", "args": ""})
                    entry["id"] = tc.id or entry["id"]
                    if tc.function:
                        entry["name"] += tc.function.name or ""
                        entry["args"] += tc.function.arguments or ""
        assert finish == "tool_calls", finish
        assert calls[0]["id"] and calls[0]["name"] == "get_weather", calls
        assert "city" in json.loads(calls[0]["args"]), calls

    @check(f"openai json_schema output [{alias}]")
    def _():
        schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
        r = oa.chat.completions.create(
            model=alias,
            messages=[{"role": "user", "content": "Answer in JSON"}],
            response_format={"type": "json_schema", "json_schema": {"name": "reply", "schema": schema}},
        )
        assert "answer" in json.loads(r.choices[0].message.content)

    run_responses(alias)

    @check(f"anthropic plain [{alias}]")
    def _():
        m = an.messages.create(
            model=alias, max_tokens=200, system="Be brief.", messages=[{"role": "user", "content": "Hello there"}]
        )
        assert m.content[0].type == "text" and m.content[0].text, m
        assert m.stop_reason == "end_turn", m.stop_reason
        assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0, m.usage

    @check(f"anthropic count tokens [{alias}]")
    def _():
        n = an.messages.count_tokens(
            model=alias, system="Be brief.", messages=[{"role": "user", "content": "Hello there"}]
        )
        assert n.input_tokens > 0, n

    @check(f"anthropic document [{alias}]")
    def _():
        m = an.messages.create(
            model=alias,
            max_tokens=200,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "document",
                            "source": {"type": "base64", "media_type": "application/pdf", "data": PDF_BASE64},
                            "title": "Report",
                        },
                        {"type": "text", "text": "Summarize the report."},
                    ],
                }
            ],
        )
        assert m.content[0].type == "text" and m.content[0].text, m
        assert m.stop_reason == "end_turn", m.stop_reason

    if alias == "anthropic":

        @check(f"anthropic extended thinking, streamed, through a tool loop [{alias}]")
        def _():
            thinking = {"type": "enabled", "budget_tokens": 1024}
            tools = [ANTHROPIC_WEATHER_TOOL]
            messages = [{"role": "user", "content": "What is the weather in Paris?"}]
            with an.messages.stream(
                model=alias, max_tokens=2000, thinking=thinking, tools=tools, messages=messages
            ) as stream:
                turn = stream.get_final_message()
            assert isinstance(turn.content[0], anthropic.types.ThinkingBlock), turn.content
            assert turn.content[0].thinking and turn.content[0].signature, turn.content[0]
            call = next(b for b in turn.content if b.type == "tool_use")
            # The SDK's own blocks go back as the turn, its thinking first.
            messages += [
                {"role": "assistant", "content": turn.content},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 degrees"}]},
            ]
            m = an.messages.create(model=alias, max_tokens=2000, thinking=thinking, tools=tools, messages=messages)
            assert [b.type for b in m.content] == ["thinking", "text"], m.content
            assert "18 degrees" in m.content[1].text, m.content[1]

        @check(f"openai reasoning effort through a tool loop [{alias}]")
        def _():
            messages = [{"role": "user", "content": "What is the weather in Paris?"}]
            r = oa.chat.completions.create(model=alias, reasoning_effort="low", messages=messages, tools=[WEATHER_TOOL])
            msg = r.choices[0].message
            assert msg.tool_calls, msg
            messages.append(msg.model_dump(exclude_none=True))
            messages.append({"role": "tool", "tool_call_id": msg.tool_calls[0].id, "content": "18 degrees"})
            r2 = oa.chat.completions.create(model=alias, reasoning_effort="low", messages=messages, tools=[WEATHER_TOOL])
            assert "18 degrees" in r2.choices[0].message.content, r2

        @check(f"anthropic web search server tool [{alias}]")
        def _():
            tools = [{"type": "web_search_20250305", "name": "web_search", "max_uses": 2}]
            question = {"role": "user", "content": "Latest news on trains"}
            m = an.messages.create(model=alias, max_tokens=200, tools=tools, messages=[question])
            kinds = [b.type for b in m.content]
            assert kinds[:2] == ["server_tool_use", "web_search_tool_result"], kinds
            assert isinstance(m.content[0], anthropic.types.ServerToolUseBlock), m.content[0]
            assert m.content[0].input == {"query": "Latest news on trains"}, m.content[0].input
            assert m.content[1].tool_use_id == m.content[0].id
            assert m.content[1].content[0].url.startswith("https://"), m.content[1]
            assert m.content[-1].citations[0].type == "web_search_result_location", m.content[-1]
            with an.messages.stream(model=alias, max_tokens=200, tools=tools, messages=[question]) as stream:
                final = stream.get_final_message()
            assert [b.type for b in final.content] == kinds, final.content
            assert final.content[0].input == m.content[0].input, final.content[0]
            history = [b.model_dump(exclude_none=True) for b in m.content]
            again = an.messages.create(
                model=alias,
                max_tokens=200,
                tools=tools,
                messages=[question, {"role": "assistant", "content": history}, {"role": "user", "content": "More?"}],
            )
            assert again.stop_reason == "end_turn", again

        @check(f"anthropic citations [{alias}]")
        def _():
            question = {
                "role": "user",
                "content": [
                    {
                        "type": "document",
                        "source": {"type": "text", "media_type": "text/plain", "data": "The grass is green. The sky is blue."},
                        "title": "Facts",
                        "citations": {"enabled": True},
                    },
                    {"type": "text", "text": "What colour is the grass?"},
                ],
            }
            m = an.messages.create(model=alias, max_tokens=200, messages=[question])
            cited = [b for b in m.content if b.type == "text" and b.citations]
            assert cited, m.content
            citation = cited[0].citations[0]
            assert citation.type == "char_location", citation
            assert citation.cited_text == "The grass is green. " and citation.document_title == "Facts", citation
            with an.messages.stream(model=alias, max_tokens=200, messages=[question]) as stream:
                final = stream.get_final_message()
            assert [(b.text, b.citations) for b in final.content] == [(b.text, b.citations) for b in m.content], (
                final.content,
                m.content,
            )
            history = [question, {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]}]
            m2 = an.messages.create(
                model=alias, max_tokens=200, messages=history + [{"role": "user", "content": "And the sky?"}]
            )
            assert m2.content[0].text, m2

    if alias == "anthropic":

        @check(f"anthropic search results [{alias}]")
        def _():
            result = {
                "type": "search_result",
                "source": "https://kb.example/grass",
                "title": "Grass",
                "content": [{"type": "text", "text": "The grass is green."}],
                "citations": {"enabled": True},
            }
            m = an.messages.create(
                model=alias,
                max_tokens=200,
                messages=[{"role": "user", "content": [result, {"type": "text", "text": "What colour is the grass?"}]}],
            )
            citations = [c for b in m.content if b.type == "text" for c in (b.citations or [])]
            assert citations, m.content
            assert citations[0].type == "search_result_location", citations[0]
            assert citations[0].source == "https://kb.example/grass" and citations[0].title == "Grass", citations[0]

    @check(f"openai file part [{alias}]")
    def _():
        r = oa.chat.completions.create(
            model=alias,
            messages=[
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "Summarize the report."},
                        {
                            "type": "file",
                            "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF_BASE64}"},
                        },
                    ],
                }
            ],
        )
        assert r.choices[0].message.content, r
        assert r.choices[0].finish_reason == "stop", r.choices[0].finish_reason

    @check(f"anthropic stream [{alias}]")
    def _():
        with an.messages.stream(
            model=alias, max_tokens=200, messages=[{"role": "user", "content": "Tell me a story"}]
        ) as stream:
            text = "".join(stream.text_stream)
            final = stream.get_final_message()
        assert text, "no streamed text"
        assert final.stop_reason == "end_turn", final.stop_reason
        assert final.usage.output_tokens > 0, final.usage

    @check(f"anthropic tool round trip [{alias}]")
    def _():
        messages = [{"role": "user", "content": "What is the weather in Paris?"}]
        m = an.messages.create(model=alias, max_tokens=200, tools=[ANTHROPIC_WEATHER_TOOL], messages=messages)
        assert m.stop_reason == "tool_use", m.stop_reason
        use = next(b for b in m.content if b.type == "tool_use")
        assert use.name == "get_weather" and "city" in use.input, use
        messages.append({"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in m.content]})
        messages.append(
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "18 degrees and sunny"}]}
        )
        m2 = an.messages.create(model=alias, max_tokens=200, tools=[ANTHROPIC_WEATHER_TOOL], messages=messages)
        assert m2.stop_reason == "end_turn", m2.stop_reason
        assert "18 degrees" in m2.content[0].text, m2.content

    # The SDK's tool runner, which sends a message thread (the message threads beta) unless
    # told not to: the gateway refuses the thread as the API refuses one it cannot keep, and
    # the runner goes on sending the whole conversation.
    if hasattr(an.beta.messages, "tool_runner"):

        @check(f"anthropic tool runner [{alias}]")
        def _():
            ran = []

            @anthropic.beta_tool
            def get_weather(city: str) -> str:
                """The weather in a city."""
                ran.append(city)
                return "18 degrees and sunny"

            for stream in (False, True):
                runner = an.beta.messages.tool_runner(
                    model=alias,
                    max_tokens=200,
                    tools=[get_weather],
                    messages=[{"role": "user", "content": "What is the weather in Paris?"}],
                    stream=stream,
                )
                final = runner.until_done()
                assert final.stop_reason == "end_turn", final.stop_reason
                assert "18 degrees" in final.content[0].text, final.content
            assert len(ran) == 2, ran

    @check(f"openai legacy completions, whole and streamed [{alias}]")
    def _():
        r = oa.completions.create(model=alias, prompt="Once upon a time", max_tokens=50)
        assert r.object == "text_completion" and r.choices[0].text, r
        assert r.choices[0].finish_reason == "stop", r.choices[0]
        assert r.usage and r.usage.prompt_tokens > 0, r.usage
        chunks = list(
            oa.completions.create(
                model=alias, prompt="Once upon a time", stream=True, stream_options={"include_usage": True}
            )
        )
        assert "".join(c.choices[0].text for c in chunks if c.choices), chunks
        assert chunks[-1].usage and chunks[-1].usage.completion_tokens > 0, chunks[-1]

    @check(f"anthropic streamed tool call [{alias}]")
    def _():
        with an.messages.stream(
            model=alias,
            max_tokens=200,
            tools=[ANTHROPIC_WEATHER_TOOL],
            tool_choice={"type": "any"},
            messages=[{"role": "user", "content": "Weather in Oslo?"}],
        ) as stream:
            final = stream.get_final_message()
        assert final.stop_reason == "tool_use", final.stop_reason
        use = next(b for b in final.content if b.type == "tool_use")
        assert "city" in use.input, use


RESPONSES_WEATHER_TOOL = {"type": "function", "strict": False, **WEATHER_TOOL["function"]}
PATCH_TOOL = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": 'start: "*** Begin Patch" /(.|\\n)+/'},
}


def run_responses(alias):
    """The Responses API (`client.responses`), stateless: each request carries its history."""

    @check(f"openai responses plain [{alias}]")
    def _():
        r = oa.responses.create(model=alias, instructions="Be brief.", input="Hello there")
        assert r.status == "completed", r.status
        assert r.output_text, r
        assert r.model == alias, r.model
        assert r.instructions == "Be brief.", r.instructions
        assert r.usage.input_tokens > 0 and r.usage.output_tokens > 0, r.usage
        assert r.usage.total_tokens == r.usage.input_tokens + r.usage.output_tokens

    @check(f"openai responses stream [{alias}]")
    def _():
        deltas, kinds = "", []
        with oa.responses.stream(model=alias, input="Tell me a story") as stream:
            for event in stream:
                kinds.append(event.type)
                if event.type == "response.output_text.delta":
                    deltas += event.delta
            final = stream.get_final_response()
        assert kinds[0] == "response.created" and kinds[-1] == "response.completed", kinds
        assert deltas and deltas == final.output_text, (deltas, final.output_text)
        assert final.usage.input_tokens > 0 and final.usage.output_tokens > 0, final.usage

    @check(f"openai responses max_output_tokens below the API's least is refused [{alias}]")
    def _():
        try:
            oa.responses.create(model=alias, input="Write a long essay", max_output_tokens=5)
        except openai.BadRequestError as e:
            assert e.body["param"] == "max_output_tokens", e.body
        else:
            raise AssertionError("max_output_tokens=5 was accepted")

    @check(f"openai responses tool round trip [{alias}]")
    def _():
        history = [{"role": "user", "content": "What is the weather in Paris?"}]
        r = oa.responses.create(model=alias, input=history, tools=[RESPONSES_WEATHER_TOOL])
        calls = [item for item in r.output if item.type == "function_call"]
        assert calls and calls[0].name == "get_weather", r.output
        assert "city" in json.loads(calls[0].arguments), calls[0].arguments
        history += r.output
        history.append({"type": "function_call_output", "call_id": calls[0].call_id, "output": "18 degrees and sunny"})
        r2 = oa.responses.create(model=alias, input=history, tools=[RESPONSES_WEATHER_TOOL])
        assert r2.status == "completed", r2.status
        assert "18 degrees" in r2.output_text, r2.output_text

    @check(f"openai responses streamed tool call [{alias}]")
    def _():
        with oa.responses.stream(
            model=alias, input="Weather in Oslo?", tools=[RESPONSES_WEATHER_TOOL], tool_choice="required"
        ) as stream:
            done = [e for e in stream if e.type == "response.function_call_arguments.done"]
            final = stream.get_final_response()
        calls = [item for item in final.output if item.type == "function_call"]
        assert calls and calls[0].name == "get_weather" and calls[0].call_id, final.output
        assert done and done[0].arguments == calls[0].arguments, done
        assert "city" in json.loads(calls[0].arguments), calls[0].arguments

    @check(f"openai responses custom tool round trip [{alias}]")
    def _():
        # A free-form tool as Codex offers `apply_patch`: its call's input is text, not JSON.
        history = [{"role": "user", "content": "Create hello.txt"}]
        choice = {"type": "custom", "name": "apply_patch"}
        r = oa.responses.create(model=alias, input=history, tools=[PATCH_TOOL], tool_choice=choice)
        calls = [item for item in r.output if item.type == "custom_tool_call"]
        assert calls and calls[0].name == "apply_patch" and calls[0].input, r.output
        assert r.tools[0].type == "custom" and r.tools[0].format.type == "grammar", r.tools
        history += r.output
        history.append({"type": "custom_tool_call_output", "call_id": calls[0].call_id, "output": "Patch applied"})
        r2 = oa.responses.create(model=alias, input=history, tools=[PATCH_TOOL])
        assert "Patch applied" in r2.output_text, r2.output_text
        with oa.responses.stream(model=alias, input="Create hello.txt", tools=[PATCH_TOOL], tool_choice=choice) as stream:
            done = [e for e in stream if e.type == "response.custom_tool_call_input.done"]
            final = stream.get_final_response()
        calls = [item for item in final.output if item.type == "custom_tool_call"]
        assert calls and done and done[0].input == calls[0].input, (done, final.output)

    @check(f"openai responses hosted web search [{alias}]")
    def _():
        # Claude searches with Anthropic's own tool; providers without a search answer without one.
        tools = [{"type": "web_search", "user_location": {"type": "approximate", "country": "NO"}}]
        r = oa.responses.create(model=alias, input="Latest news on trains", tools=tools)
        searches = [item for item in r.output if item.type == "web_search_call"]
        with oa.responses.stream(model=alias, input="Latest news on trains", tools=tools) as stream:
            final = stream.get_final_response()
        streamed = [item for item in final.output if item.type == "web_search_call"]
        assert r.output_text and final.output_text, (r.output, final.output)
        if alias == "anthropic" or alias.startswith("claude"):
            assert isinstance(searches[0], openai.types.responses.ResponseFunctionWebSearch), r.output
            assert searches[0].action.query == "Latest news on trains", searches[0]
            assert searches[0].status == "completed" and searches[0].action.sources, searches[0]
            assert streamed and streamed[0].action.query == searches[0].action.query, final.output
        else:
            assert not searches and not streamed, (r.output, final.output)

    @check(f"openai responses parse [{alias}]")
    def _():
        from pydantic import BaseModel

        class Reply(BaseModel):
            answer: str

        r = oa.responses.parse(model=alias, input="Answer in JSON", text_format=Reply)
        assert isinstance(r.output_parsed, Reply), r.output_parsed

    @check(f"openai responses input tokens [{alias}]")
    def _():
        n = oa.responses.input_tokens.count(model=alias, instructions="Be brief.", input="Hello there")
        assert n.object == "response.input_tokens" and n.input_tokens > 0, n

    @check(f"openai responses previous_response_id, retrieve, input items, delete [{alias}]")
    def _():
        first = oa.responses.create(model=alias, input="What is the weather in Paris?", tools=[RESPONSES_WEATHER_TOOL], tool_choice="required")
        assert first.store is True, first.store
        call = next(item for item in first.output if item.type == "function_call")
        second = oa.responses.create(
            model=alias,
            previous_response_id=first.id,
            tools=[RESPONSES_WEATHER_TOOL],
            input=[{"type": "function_call_output", "call_id": call.call_id, "output": "18 degrees"}],
        )
        assert "18 degrees" in second.output_text, second.output_text
        got = oa.responses.retrieve(first.id)
        assert got.id == first.id and got.output[-1].call_id == call.call_id, got
        items = oa.responses.input_items.list(first.id)
        assert items.data and items.data[0].type == "message", items
        oa.responses.delete(first.id)
        try:
            oa.responses.retrieve(first.id)
        except openai.NotFoundError:
            pass
        else:
            raise AssertionError("a deleted response was found")

    @check(f"openai responses refuses what it does not keep [{alias}]")
    def _():
        r = oa.responses.create(model=alias, input="Hello", store=False)
        assert r.store is False, r.store
        try:
            oa.responses.create(model=alias, input="Go on", previous_response_id=r.id)
        except openai.BadRequestError as e:
            assert e.body["param"] == "previous_response_id", e.body
        else:
            raise AssertionError("an unkept previous_response_id was accepted")


def run_langchain(alias):
    from langchain_core.messages import HumanMessage
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model=alias, base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=30)

    @check(f"langchain invoke [{alias}]")
    def _():
        r = llm.invoke([HumanMessage(content="Hello there")])
        assert r.content, r
        assert r.usage_metadata and r.usage_metadata["input_tokens"] > 0, r.usage_metadata

    @check(f"langchain stream [{alias}]")
    def _():
        text = "".join(chunk.content for chunk in llm.stream("Tell me a story"))
        assert text

    @check(f"langchain tool call [{alias}]")
    def _():
        r = llm.bind_tools([WEATHER_TOOL]).invoke("What is the weather in Paris?")
        assert r.tool_calls and r.tool_calls[0]["name"] == "get_weather", r
        assert "city" in r.tool_calls[0]["args"], r.tool_calls

    responses = ChatOpenAI(
        model=alias, base_url=f"{BASE}/v1", api_key=KEY, max_retries=0, timeout=30, use_responses_api=True
    )

    @check(f"langchain responses api tool round trip [{alias}]")
    def _():
        from langchain_core.messages import ToolMessage

        bound = responses.bind_tools([WEATHER_TOOL])
        question = HumanMessage(content="What is the weather in Paris?")
        r = bound.invoke([question])
        assert r.tool_calls and r.tool_calls[0]["name"] == "get_weather", r
        answer = ToolMessage(content="18 degrees and sunny", tool_call_id=r.tool_calls[0]["id"])
        r2 = bound.invoke([question, r, answer])
        assert "18 degrees" in r2.text, r2.content
        assert r2.usage_metadata and r2.usage_metadata["input_tokens"] > 0, r2.usage_metadata


for alias in ALIASES:
    run_alias(alias)
run_langchain(ALIASES[0])


@check("openai embeddings, float and base64")
def _():
    r = oa.embeddings.create(model=EMBEDDING_ALIAS, input=["a", "b c"], encoding_format="float")
    assert len(r.data) == 2 and len(r.data[0].embedding) > 0, r
    r2 = oa.embeddings.create(model=EMBEDDING_ALIAS, input="a")  # the SDK asks for base64 itself
    assert r2.data[0].embedding == r.data[0].embedding
    assert r.usage.prompt_tokens > 0


@check("openai models list")
def _():
    ids = {m.id for m in oa.models.list()}
    assert set(ALIASES) <= ids, ids
    assert oa.models.retrieve(ALIASES[0]).id == ALIASES[0]


@check("anthropic models list")
def _():
    # Pages of two, which the SDK follows by itself.
    models = list(an.models.list(limit=2))
    assert set(ALIASES) <= {m.id for m in models}, models
    assert all(m.type == "model" and m.display_name and m.created_at for m in models), models
    assert an.models.retrieve(ALIASES[0]).id == ALIASES[0]
    try:
        an.models.retrieve("no-such-model")
    except anthropic.NotFoundError as e:
        assert e.status_code == 404
    else:
        raise AssertionError("no error")


@check("openai bad key is AuthenticationError")
def _():
    bad = openai.OpenAI(base_url=f"{BASE}/v1", api_key="wrong", max_retries=0)
    try:
        bad.chat.completions.create(model=ALIASES[0], messages=[{"role": "user", "content": "x"}])
    except openai.AuthenticationError as e:
        assert e.status_code == 401
        assert "wrong" not in str(e)
    else:
        raise AssertionError("no error")


@check("openai unknown model is NotFoundError")
def _():
    try:
        oa.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    except openai.NotFoundError as e:
        assert e.body["code"] == "model_not_found", e.body
    else:
        raise AssertionError("no error")


@check("openai bad request is BadRequestError with the field")
def _():
    try:
        oa.chat.completions.create(model=ALIASES[0], messages=[{"role": "wizard", "content": "x"}])
    except openai.BadRequestError as e:
        assert e.body["param"] == "messages[0].role", e.body
    else:
        raise AssertionError("no error")


@check("anthropic bad key is AuthenticationError")
def _():
    bad = anthropic.Anthropic(base_url=BASE, api_key="wrong", max_retries=0)
    try:
        bad.messages.create(model=ALIASES[0], max_tokens=10, messages=[{"role": "user", "content": "x"}])
    except anthropic.AuthenticationError as e:
        assert e.status_code == 401
    else:
        raise AssertionError("no error")


@check("anthropic missing max_tokens is BadRequestError")
def _():
    try:
        an.post(
            "/v1/messages",
            body={"model": ALIASES[0], "messages": [{"role": "user", "content": "x"}]},
            cast_to=object,
        )
    except anthropic.BadRequestError as e:
        assert e.body["error"]["type"] == "invalid_request_error", e.body
    else:
        raise AssertionError("no error")


print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
