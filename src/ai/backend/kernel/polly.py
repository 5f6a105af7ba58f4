"""Query mode of ``vendor.aws_polly``: text-to-speech through AWS Polly.

boto3 is not a runtime dependency of the runner; images that use this runtime install it.
"""

from __future__ import annotations

import asyncio
import base64
import importlib
import json
from typing import Any

from .protocol import Record, RecordSink, encode_json

USAGE = b'Send a JSON request: {"text": "...", "voiceId": "Joanna", "textType": "text"|"ssml"}\n'


def _synthesize(boto3: Any, request: dict[str, str]) -> tuple[str, bytes]:
    response = boto3.client("polly").synthesize_speech(
        Text=request["text"],
        VoiceId=request["voiceId"],
        TextType=request.get("textType", "text"),
        OutputFormat="ogg_vorbis",
    )
    return str(response["ContentType"]), bytes(response["AudioStream"].read())


async def speak(code: str, send: RecordSink) -> int:
    try:
        boto3 = importlib.import_module("boto3")
    except ImportError:
        await send(Record.STDERR, b"vendor.aws_polly needs boto3, which is not installed here.\n")
        return 127
    try:
        request = json.loads(code)
    except ValueError:
        request = None
    if not isinstance(request, dict) or not {"text", "voiceId"} <= request.keys():
        await send(Record.STDERR, USAGE)
        return 2
    try:
        content_type, audio = await asyncio.to_thread(_synthesize, boto3, request)
    except Exception as e:
        await send(Record.STDERR, f"AWS Polly request failed: {e}\n".encode())
        return 1
    data = f"data:{content_type};base64,{base64.b64encode(audio).decode()}"
    await send(Record.MEDIA, encode_json({"type": content_type, "data": data}))
    return 0
