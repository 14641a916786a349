"""aiodynamo's HTTP layer through ``requests``, for the unit tier: in-process moto answers
botocore and ``requests`` only, so the marker claims (chalicelib/core/claims.py) reach it this way.
Everything above the HTTP layer (aiodynamo's requests, signing, errors) is the real one."""
import asyncio

import requests
from aiodynamo.http.types import Request, RequestFailed, Response


async def through_requests(request: Request) -> Response:
    def send() -> Response:
        answer = requests.request(request.method, request.url, headers=dict(request.headers), data=request.body,
                                  timeout=10)
        return Response(answer.status_code, answer.content)

    try:
        return await asyncio.to_thread(send)
    except requests.RequestException as e:
        raise RequestFailed(e) from e
