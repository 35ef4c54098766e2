"""The official `openai` client on the routes the gateway passes through as they came (files,
audio, images, moderations), for `tests/raw_passthrough.rs`. Each scenario prints what the client
got back, one `name value` line each.
"""

import os
import sys

import openai

URL = os.environ["TOLLGATE_URL"]
KEY = os.environ["TOLLGATE_KEY"]

# What the upload carries: bytes no text encoding would keep as they are.
FILE_BYTES = b'{"custom_id": "r1"}\n\x00\xff\xfe tail\n'


def client():
    return openai.OpenAI(base_url=URL + "/v1", api_key=KEY, max_retries=0)


def files():
    created = client().files.create(file=("batch.jsonl", FILE_BYTES, "application/jsonl"), purpose="batch")
    print("id", created.id)
    print("purpose", created.purpose)


def transcription():
    text = client().audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", b"RIFF\x00\x00WAVEfmt data", "audio/wav")
    )
    print("text", text.text)


def images():
    made = client().images.generate(model="dall-e-3", prompt="a cat", n=1, size="1024x1792", quality="hd")
    print("images", len(made.data))


def moderation():
    checked = client().moderations.create(input="a friendly word")
    print("model", checked.model)


def speech():
    spoken = client().audio.speech.create(model="tts-1", voice="alloy", input="hello")
    print("audio", spoken.content.hex())


if __name__ == "__main__":
    {"files": files, "transcription": transcription, "images": images, "moderation": moderation, "speech": speech}[sys.argv[1]]()
