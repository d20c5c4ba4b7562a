"""Giant uploads and slow clients against the real daemon: refused early, never blocking anyone else."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

from fuzz_strategies import build_form, json_bytes
from fuzz_target import Target, after_case, post
from reliability_support import PLAIN_LIMITS, Reply, UnixHTTPConnection, request

MAX_UPLOAD = PLAIN_LIMITS["max_upload_bytes"]


def chunks_of(data: bytes, size: int) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start:start + size]


def post_chunked(path: str, route: str, pieces: Iterator[bytes], content_type: str) -> Reply:
    conn = UnixHTTPConnection(path, 60)
    try:
        conn.request("POST", route, body=pieces, headers={"Content-Type": content_type}, encode_chunked=True)
        answer = conn.getresponse()
        return Reply(answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read())
    except (BrokenPipeError, ConnectionResetError):
        return Reply(0, {}, b"connection closed while sending")
    finally:
        conn.close()


def test_giant_uploads_are_refused_with_413_whether_sized_or_chunked(target: Target) -> None:
    giant = b"RIFF" + b"\0" * (MAX_UPLOAD + 512 * 1024)
    body, content_type = build_form({"name": "giant", "text": "Hello.", "audio": giant, "mangle": "none"})
    sized = post(target, "/v1/voices", body, content_type)
    chunked = post_chunked(target.daemon.socket, "/v1/voices", chunks_of(body, 65536), content_type)
    print(f"\nFIGURE giant upload ({len(body)} bytes): sized {sized.status}, chunked {chunked.status}")
    assert (sized.status, chunked.status) == (413, 413), (sized.body, chunked.body)
    after_case(target, "/v1/voices")


# ---- slow clients -------------------------------------------------------------------------------
SLOW_CLIENTS, TRICKLE_EVERY_S = 12, 0.1
SLOW_BODY = json_bytes({"text": "Slow.", "nfe": 1})


def trickle(path: str, body: bytes, every_s: float, results: list[int]) -> None:
    """POST /v1/tts sending the body one byte at a time; appends the answer's status (0 = none)."""
    head = (f"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(60)
        sock.connect(path)
        sock.sendall(head)
        for byte in body:
            time.sleep(every_s)
            sock.sendall(bytes([byte]))
        answer = sock.makefile("rb").readline().split()
    results.append(int(answer[1]) if len(answer) > 1 else 0)


def timed_tts(path: str) -> float:
    started = time.monotonic()
    assert request(path, "POST", "/v1/tts", {"text": "Quick one.", "nfe": 2}, timeout=60).status == 200
    return time.monotonic() - started


def test_slow_clients_do_not_block_others(target: Target) -> None:
    sock = target.daemon.socket
    alone = max(timed_tts(sock) for _ in range(3))
    statuses: list[int] = []
    threads = [threading.Thread(target=trickle, args=(sock, SLOW_BODY, TRICKLE_EVERY_S, statuses))
               for _ in range(SLOW_CLIENTS)]
    stalled = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stalled.connect(sock)
    stalled.sendall(b"POST /v1/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Content-Length: 1000\r\n\r\n{")  # and never the rest
    trickling_s = len(SLOW_BODY) * TRICKLE_EVERY_S
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    meanwhile = [timed_tts(sock) for _ in range(3)]
    for thread in threads:
        thread.join(trickling_s + 60)
    stalled.close()
    print(f"\nFIGURE slow clients: {SLOW_CLIENTS} clients trickling 1 byte/{TRICKLE_EVERY_S}s "
          f"({trickling_s:.1f}s per body) + 1 stalled: other requests took {max(meanwhile):.2f}s "
          f"(alone {alone:.2f}s); the trickled requests got {sorted(statuses)}")
    assert max(meanwhile) < trickling_s, "a normal request waited for the slow clients"
    assert statuses == [200] * SLOW_CLIENTS
    after_case(target)
