"""The fake Slack speaks Slack's real protocols: slack_sdk, slack_bolt and Socket Mode work against it unmodified."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from slack_bolt.async_app import AsyncApp
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.models.messages.chunk import TaskUpdateChunk
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_server import (
    BOT_ID,
    BOT_USER_ID,
    TEAM_ID,
    FakeSlack,
    app_mention,
    assistant_thread_started,
    block_action,
    event_callback,
    feedback_press_payload,
    file_share_message,
    signed_headers,
    slash_command_form,
)

SECRET = "signing-secret-for-tests"


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


@pytest.fixture
async def client(slack: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    web_client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
    yield web_client
    if web_client.session is not None:
        await web_client.session.close()


async def test_auth_test_answers_what_bolt_caches(slack: FakeSlack, client: AsyncWebClient) -> None:
    answer = await client.auth_test()

    assert (answer["user_id"], answer["bot_id"], answer["team_id"]) == (BOT_USER_ID, BOT_ID, TEAM_ID)
    assert slack.calls == [("auth.test", {}, slack.bot_token)]


async def test_wrong_or_missing_token_is_refused_like_slack(slack: FakeSlack) -> None:
    for token, error in (("xoxb-someone-else", "invalid_auth"), (None, "not_authed")):
        with pytest.raises(SlackApiError) as raised:
            await AsyncWebClient(token=token, base_url=slack.api_url).auth_test()
        assert raised.value.response["error"] == error


async def test_post_message_returns_increasing_ts_and_records_json_params(
    slack: FakeSlack, client: AsyncWebClient
) -> None:
    first = await client.chat_postMessage(channel="C1", text="hello", thread_ts="1700000001.000001")
    second = await client.chat_postMessage(
        channel="C1", text="hi", blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}]
    )

    assert first["ts"] == "1700000000.000100"
    assert float(second["ts"]) > float(first["ts"])
    assert first["message"]["text"] == "hello"
    assert first["channel"] == "C1"
    assert slack.calls_to("chat.postMessage")[0] == {"channel": "C1", "text": "hello", "thread_ts": "1700000001.000001"}
    assert slack.calls_to("chat.postMessage")[1]["blocks"][0]["text"]["text"] == "hi"
    assert [m.text for m in slack.thread("C1", "1700000001.000001")] == ["hello"]


async def test_form_encoded_bodies_are_read_and_json_fields_decoded(slack: FakeSlack, client: AsyncWebClient) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "form"}}]
    await client.api_call("chat.postMessage", data={"channel": "C1", "text": "t", "blocks": json.dumps(blocks)})

    assert slack.calls_to("chat.postMessage") == [{"channel": "C1", "text": "t", "blocks": blocks}]


async def test_slack_errors_for_bad_messages(slack: FakeSlack, client: AsyncWebClient) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"channel": "C1"}, "no_text"),
        ({"channel": "C1", "text": "x" * 40_001}, "msg_too_long"),
        (
            {
                "channel": "C1",
                "text": "x",
                "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}],
            },
            "invalid_blocks",
        ),
    ]
    for params, error in cases:
        with pytest.raises(SlackApiError) as raised:
            await client.api_call("chat.postMessage", json=params)
        assert raised.value.response["error"] == error
    with pytest.raises(SlackApiError, match="message_not_found"):
        await client.chat_update(channel="C1", ts="1.2", text="edited")
    with pytest.raises(SlackApiError, match="unknown_method"):
        await client.api_call("chat.teleport")

    assert slack.calls_to("chat.postMessage", include_failed=False) == []


async def test_a_refusal_with_an_http_status_and_a_lower_text_limit() -> None:
    async with FakeSlack(max_text=10) as slack:
        client = AsyncWebClient(token=slack.bot_token, base_url=slack.api_url)
        with pytest.raises(SlackApiError) as too_long:
            await client.chat_postMessage(channel="C1", text="eleven char")
        posted = await client.chat_postMessage(channel="C1", text="ten chars!")
        slack.refuse("chat.update", "internal_error", status=500, channel="C1")
        with pytest.raises(SlackApiError) as refused:
            await client.chat_update(channel="C1", ts=posted["ts"], text="edited")
        elsewhere = await client.chat_postMessage(channel="C2", text="fine")
        await client.chat_update(channel="C2", ts=elsewhere["ts"], text="still fine")
        slack.allow("chat.update", channel="C1")
        await client.chat_update(channel="C1", ts=posted["ts"], text="edited")

    assert too_long.value.response["error"] == "msg_too_long"
    assert (refused.value.response.status_code, refused.value.response["error"]) == (500, "internal_error")
    assert slack.messages[posted["ts"]].text == "edited"


async def test_update_changes_the_posted_message(slack: FakeSlack, client: AsyncWebClient) -> None:
    posted = await client.chat_postMessage(channel="C1", text="thinking…")
    await client.chat_update(channel="C1", ts=posted["ts"], text="the answer")

    assert slack.messages[posted["ts"]].text == "the answer"
    assert slack.messages[posted["ts"]].updates == 1


async def test_rate_limit_is_waited_out_by_the_retry_handler(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.fail_next("chat.postMessage", retry_after=0)
    with pytest.raises(SlackApiError, match="ratelimited"):
        await client.chat_postMessage(channel="C1", text="no retry handler")

    slack.fail_next("chat.postMessage", retry_after=0)
    client.retry_handlers.append(AsyncRateLimitErrorRetryHandler(max_retry_count=1))
    answer = await client.chat_postMessage(channel="C1", text="retried")

    assert answer["ok"]
    assert [c["text"] for c in slack.calls_to("chat.postMessage")] == ["no retry handler", "retried", "retried"]
    assert [c["text"] for c in slack.calls_to("chat.postMessage", include_failed=False)] == ["retried"]


async def test_streaming_and_its_refusal(slack: FakeSlack, client: AsyncWebClient) -> None:
    stream = await client.chat_stream(
        channel="C1", thread_ts="1700000001.000001", recipient_team_id=TEAM_ID, recipient_user_id="U1", buffer_size=5
    )
    await stream.append(markdown_text="Hello ")
    await stream.append(markdown_text="world")
    await stream.stop(markdown_text="!")

    [message] = slack.thread("C1", "1700000001.000001")
    assert (message.text, message.streaming) == ("Hello world!", False)
    assert [c.method for c in slack.calls] == ["chat.startStream", "chat.appendStream", "chat.stopStream"]
    with pytest.raises(SlackApiError, match="message_not_in_streaming_state"):
        await client.chat_appendStream(channel="C1", ts=message.ts, markdown_text="late")

    slack.refuse("chat.startStream")
    with pytest.raises(SlackApiError, match="method_not_supported_for_channel_type"):
        await client.chat_startStream(channel="C1", thread_ts="1700000001.000001", markdown_text="x")
    slack.allow("chat.startStream")
    assert (await client.chat_startStream(channel="C1", thread_ts="1700000001.000001"))["ts"]


async def test_file_download_needs_the_bot_token(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.add_file("F1", "notes.txt", b"meeting notes", "text/plain", "C1")
    info = (await client.files_info(file="F1"))["file"]
    assert (info["name"], info["size"], info["channels"]) == ("notes.txt", 13, ["C1"])

    async with aiohttp.ClientSession() as session:
        async with session.get(info["url_private"], headers={"Authorization": f"Bearer {slack.bot_token}"}) as ok:
            assert (ok.status, await ok.read()) == (200, b"meeting notes")
        async with session.get(info["url_private_download"]) as refused:
            assert refused.status == 403

    assert [(d.file_id, d.authorized) for d in slack.downloads] == [("F1", True), ("F1", False)]
    with pytest.raises(SlackApiError, match="file_not_found"):
        await client.files_info(file="F404")


async def test_members_paginate_and_info_methods(slack: FakeSlack, client: AsyncWebClient) -> None:
    slack.members["C1"] = ["U1", "U2", "U3"]
    slack.users["U2"] = {"real_name": "Ada Lovelace"}

    pages = [page["members"] async for page in await client.conversations_members(channel="C1", limit=2)]
    assert pages == [["U1", "U2"], ["U3"]]
    assert (await client.users_info(user="U2"))["user"]["real_name"] == "Ada Lovelace"
    assert (await client.conversations_info(channel="D1"))["channel"]["is_im"] is True
    assert (await client.conversations_info(channel="C1"))["channel"]["is_im"] is False
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.conversations_members(channel="C_UNKNOWN")


async def test_reactions_and_assistant_status(slack: FakeSlack, client: AsyncWebClient) -> None:
    await client.reactions_add(channel="C1", timestamp="1.1", name="eyes")
    with pytest.raises(SlackApiError, match="already_reacted"):
        await client.reactions_add(channel="C1", timestamp="1.1", name="eyes")
    await client.reactions_remove(channel="C1", timestamp="1.1", name="eyes")
    slack.say(assistant_thread_started("D1", "U1", "1.1"))
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts="1.1", status="is thinking…")

    assert slack.reactions == set()
    assert slack.calls_to("assistant.threads.setStatus") == [
        {"channel_id": "D1", "thread_ts": "1.1", "status": "is thinking…"}
    ]
    assert slack.statuses == {("D1", "1.1"): "is thinking…"}


async def test_the_assistant_surface_answers_as_slack_does(slack: FakeSlack, client: AsyncWebClient) -> None:
    """setStatus, setTitle and setSuggestedPrompts work in an assistant thread and answer invalid_thread_ts
    elsewhere (setStatus anywhere with the AI features in channels); their required arguments are checked."""
    slack.say(assistant_thread_started("D1", "U1", "2.1", viewing="C9"))
    await client.assistant_threads_setTitle(channel_id="D1", thread_ts="2.1", title="Holidays")
    prompts = [{"title": "Hi", "message": "Say hi"}]
    await client.assistant_threads_setSuggestedPrompts(channel_id="D1", thread_ts="2.1", prompts=prompts)
    await client.assistant_threads_setStatus(channel_id="D1", thread_ts="2.1", status="")
    assert (slack.titles, slack.suggested, slack.statuses) == (
        {("D1", "2.1"): "Holidays"},
        {("D1", "2.1"): prompts},
        {("D1", "2.1"): ""},
    )
    for call in (
        client.assistant_threads_setStatus(channel_id="C1", thread_ts="1.1", status="is thinking…"),
        client.assistant_threads_setTitle(channel_id="D1", thread_ts="9.9", title="x"),
        client.assistant_threads_setSuggestedPrompts(channel_id="D1", thread_ts="9.9", prompts=prompts),
    ):
        with pytest.raises(SlackApiError, match="invalid_thread_ts"):
            await call
    with pytest.raises(SlackApiError, match="invalid_arguments"):
        await client.assistant_threads_setSuggestedPrompts(channel_id="D1", thread_ts="2.1", prompts=prompts * 5)
    with pytest.raises(SlackApiError, match="channel_not_found"):
        await client.assistant_threads_setStatus(channel_id="", thread_ts="2.1", status="x")
    slack.status_in_any_thread = True
    await client.assistant_threads_setStatus(channel_id="C1", thread_ts="1.1", status="is thinking…")
    assert slack.statuses[("C1", "1.1")] == "is thinking…"


async def test_task_updates_and_feedback_buttons_in_a_stream(slack: FakeSlack, client: AsyncWebClient) -> None:
    task = TaskUpdateChunk(id="call_1", title="Searching the files", status="in_progress")
    stream = await client.chat_stream(buffer_size=1, channel="C1", thread_ts="1.1")
    await stream.append(chunks=[task])
    await stream.append(markdown_text="Found it.")
    blocks = [
        {
            "type": "context_actions",
            "elements": [
                {
                    "type": "feedback_buttons",
                    "action_id": "fb",
                    "positive_button": {"text": {"type": "plain_text", "text": "👍"}, "value": "up:r1"},
                    "negative_button": {"text": {"type": "plain_text", "text": "👎"}, "value": "down:r1"},
                }
            ],
        }
    ]
    await stream.stop(blocks=blocks)
    [message] = slack.messages.values()
    assert (message.text, message.stop_blocks, message.blocks) == ("Found it.", blocks, None)
    assert [c["status"] for c in message.chunks] == ["in_progress"]
    press = feedback_press_payload(message, "down:r1", "U1", slack.response_url("f1"))
    assert (press["actions"][0]["type"], press["actions"][0]["value"]) == ("feedback_buttons", "down:r1")

    slack.refuse_chunks.add("task_update")
    refused = await client.chat_stream(buffer_size=1, channel="C1", thread_ts="1.1")
    with pytest.raises(SlackApiError, match="invalid_chunks"):
        await refused.append(chunks=[task])
    bad = [{"type": "context_actions", "elements": [{"type": "feedback_buttons", "action_id": "fb"}]}]
    with pytest.raises(SlackApiError, match="invalid_blocks"):
        await client.chat_postMessage(channel="C1", text="x", blocks=bad)


async def test_wait_for_times_out_with_what_was_called(slack: FakeSlack, client: AsyncWebClient) -> None:
    await client.auth_test()
    with pytest.raises(TimeoutError, match=r"chat\.postMessage.*auth\.test"):
        await slack.wait_for("chat.postMessage", timeout=0.05)


def test_signed_headers_verify_like_slack() -> None:
    body = json.dumps(event_callback(app_mention("C1", "U1", "<@U_BOT> hi", "1.1"), "Ev1")).encode()
    headers = signed_headers(SECRET, body)

    assert headers["Content-Type"] == "application/json"
    assert SignatureVerifier(SECRET).is_valid_request(body, headers)
    assert not SignatureVerifier("another-secret").is_valid_request(body, headers)
    assert signed_headers(SECRET, b"a=b")["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.fixture
async def bolt(slack: FakeSlack, client: AsyncWebClient) -> AsyncIterator[tuple[AsyncApp, str]]:
    """A Bolt app in HTTP mode served on loopback, talking to the fake's Web API."""
    app = AsyncApp(client=client, signing_secret=SECRET)
    runner = web.AppRunner(app.web_app(), access_log=None, shutdown_timeout=0.2)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    yield app, f"http://{host}:{port}/slack/events"
    await runner.cleanup()


async def test_bolt_over_signed_http_requests(slack: FakeSlack, bolt: tuple[AsyncApp, str]) -> None:
    app, url = bolt

    @app.event("app_mention")
    async def on_mention(event: dict[str, Any], say: Any) -> None:
        await say(text=f"you said {event['text']}", thread_ts=event["ts"])

    @app.event("message")
    async def on_message(event: dict[str, Any], say: Any) -> None:
        await say(text=f"got {len(event.get('files', []))} file(s)")

    @app.command("/ask")
    async def on_ask(ack: Any, respond: Any, command: dict[str, Any]) -> None:
        await ack()
        await respond(text=f"asked: {command['text']}")

    @app.action("approve")
    async def on_approve(ack: Any, respond: Any, body: dict[str, Any]) -> None:
        await ack()
        await respond(text=f"approved by {body['user']['id']}", replace_original=True)

    slack.add_file("F1", "a.txt", b"x", channel="C1")
    mention = json.dumps(event_callback(app_mention("C1", "U1", "<@U_BOT> hi", "1700000001.000001"), "Ev1")).encode()
    share = json.dumps(event_callback(file_share_message("C1", "U1", [slack.files["F1"]], "1700000002.1"), "Ev2"))
    command = slash_command_form("/ask", "what now", "C1", "U1", slack.response_url("cmd1"))
    click = block_action("approve", "yes", "U1", "C1", "1700000000.000100", slack.response_url("act1"))

    async with aiohttp.ClientSession() as session:
        for body in (mention, share.encode(), command, click):
            async with session.post(url, data=body, headers=signed_headers(SECRET, body)) as answer:
                assert answer.status == 200
        stale = signed_headers(SECRET, mention, timestamp=int(time.time()) - 600)
        async with session.post(url, data=mention, headers=stale) as answer:
            assert answer.status == 401
        forged = signed_headers("wrong-secret", mention)
        async with session.post(url, data=mention, headers=forged) as answer:
            assert answer.status == 401

    posts = await slack.wait_for("chat.postMessage", count=2)
    assert sorted(p["text"] for p in posts) == ["got 1 file(s)", "you said <@U_BOT> hi"]
    assert (await slack.wait_for_response("cmd1"))[0]["text"] == "asked: what now"
    assert (await slack.wait_for_response("act1"))[0]["text"] == "approved by U1"
    assert len(slack.calls_to("auth.test")) >= 1


async def test_socket_mode_hello_envelopes_acks_and_reconnect(slack: FakeSlack, client: AsyncWebClient) -> None:
    received: list[SocketModeRequest] = []

    async def listener(socket: Any, request: SocketModeRequest) -> None:
        received.append(request)
        await socket.send_socket_mode_response(SocketModeResponse(envelope_id=request.envelope_id))

    socket_client = SocketModeClient(app_token=slack.app_token, web_client=client)
    socket_client.socket_mode_request_listeners.append(listener)
    try:
        await socket_client.connect()
        await slack.wait_connected()
        event = event_callback(app_mention("C1", "U1", "<@U_BOT> hi", "1.1"), "Ev1")
        envelope_id = await slack.socket_send("events_api", event)
        assert (await slack.wait_for_ack(envelope_id)) == {"envelope_id": envelope_id}
        assert received[0].type == "events_api"
        assert received[0].payload["event"]["text"] == "<@U_BOT> hi"

        await slack.socket_disconnect()
        await slack.wait_connected(count=2)
        assert len(slack.calls_to("apps.connections.open")) == 2
        assert {c.token for c in slack.calls if c.method == "apps.connections.open"} == {slack.app_token}
    finally:
        await socket_client.close()


async def test_socket_mode_with_a_raw_websocket(slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as session:
        async with session.post(
            f"{slack.api_url}apps.connections.open", headers={"Authorization": f"Bearer {slack.app_token}"}
        ) as answer:
            url = (await answer.json())["url"]
        async with session.ws_connect(url) as ws:
            hello = await ws.receive_json()
            assert hello["type"] == "hello"
            envelope_id = await slack.socket_send("slash_commands", {"command": "/ask", "text": "x"})
            envelope = await ws.receive_json()
            assert envelope["envelope_id"] == envelope_id
            assert envelope["accepts_response_payload"] is True
            await ws.send_json({"envelope_id": envelope_id, "payload": {"text": "ok"}})
            assert (await slack.wait_for_ack(envelope_id))["payload"] == {"text": "ok"}
