"""One HTTP/1.1 connection as a raw asyncio protocol: request parsing, the OpenAI routes, the
faults, and the SSE framing of each token's chunk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import time

from quantbench.refserver.config import Config, perf
from quantbench.refserver.state import ServerState, Stream


def count_tokens(cfg: Config, text: str) -> list[int]:
    if cfg.tokenizer is not None:
        return cfg.tokenizer.encode(text, add_special_tokens=False).ids
    return list(text.encode())


def sse_event(obj: dict | str) -> bytes:
    """One SSE event framed as one HTTP/1.1 chunk."""
    data = obj if isinstance(obj, str) else json.dumps(obj, separators=(",", ":"))
    payload = b"data: " + data.encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(payload), payload)


class Connection(asyncio.Protocol):
    def __init__(self, server: ServerState):
        self.server, self.cfg = server, server.cfg
        self.loop = asyncio.get_running_loop()
        self.buf = bytearray()
        self.t_first_byte = 0.0
        self.stream: Stream | None = None
        self.close_after = False
        self.transport = None

    def connection_made(self, transport):
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:  # a server given its socket leaves Nagle on: a token written
            # while the response head waits for the client's (delayed) ACK would lag ~40 ms
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc):
        s = self.stream
        if s is not None and s.handle is not None:
            s.handle.cancel()
            s.finish(perf(), "aborted")
        elif s is not None and s in self.server.waiting:  # never admitted to a slot
            s.finish(perf(), "aborted")

    def data_received(self, data: bytes) -> None:
        t = perf()
        if not self.buf:
            self.t_first_byte = t
        self.buf += data
        while self.stream is None:  # no pipelining while a response streams
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
            headers = {}
            for line in head[1:]:
                k, _, v = line.partition(":")
                headers[k.strip().lower()] = v.strip()
            length = int(headers.get("content-length", 0))
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            method, path, _ = head[0].split(" ", 2)
            self.close_after = headers.get("connection", "").lower() == "close"
            first_byte, self.t_first_byte = self.t_first_byte, t
            self.handle(method, path.split("?")[0], headers, body, first_byte, t)

    # -- responses -------------------------------------------------------------------------
    def respond(self, status: int, obj: dict | None = None) -> None:
        body = json.dumps(obj).encode() if obj is not None else b""
        reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "Error")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
            % (status, reason.encode(), len(body), body)
        )
        if self.close_after:
            self.transport.close()

    def handle(self, method, path, headers, body, t_first_byte, t_recv) -> None:
        cfg = self.cfg
        if path == "/health":
            return self.respond(200)
        if path == "/metrics":
            text = self.server.metrics_text().encode()
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
                b"Content-Length: %d\r\n\r\n%s" % (len(text), text)
            )
            if self.close_after:
                self.transport.close()
            return None
        if path == "/v1/models":
            return self.respond(
                200,
                {
                    "object": "list",
                    "data": [{"id": cfg.model, "object": "model", "owned_by": "quantbench"}],
                },
            )
        try:
            req = json.loads(body or b"{}")
        except ValueError:
            return self.respond(400, {"error": {"message": "invalid JSON"}})
        if path in ("/flush_cache", "/reset_prefix_cache") and method == "POST":
            self.server.flush()
            return self.respond(200, {})
        if path == "/tokenize" and method == "POST":
            text = req.get("prompt")
            if text is None:
                text = "".join(m.get("content") or "" for m in req.get("messages", []))
            ids = count_tokens(cfg, text)
            return self.respond(200, {"tokens": ids, "count": len(ids), "max_model_len": 1 << 20})
        chat = path == "/v1/chat/completions"
        if path not in ("/v1/completions", "/v1/chat/completions") or method != "POST":
            return self.respond(404, {"error": {"message": f"no route {method} {path}"}})
        if cfg.fault_kill_parent:
            os.kill(os.getppid(), signal.SIGKILL)
        if cfg.fault_hang:
            return None
        if cfg.fault_status:
            return self.respond(cfg.fault_status, {"error": {"message": "injected fault"}})
        if cfg.fault_malformed_sse and req.get("stream"):
            self.transport.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
                + sse_event('{"choices": [{"text": " a", "finish_')
                + sse_event("<html>not an event</html>")
                + b"0\r\n\r\n"
            )
            return None
        if chat:
            text = "".join(m.get("content") or "" for m in req.get("messages", []))
            prompt_ids = count_tokens(cfg, text)
        else:
            p = req.get("prompt", "")
            prompt_ids = [int(t) for t in p] if isinstance(p, list) else count_tokens(cfg, p)
        prompt_tokens = len(prompt_ids)
        cached = self.server.cached_tokens(prompt_ids)
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens") or 16
        n = max_tokens
        if cfg.eos_after is not None and not req.get("ignore_eos"):
            n = max(req.get("min_tokens") or 0, min(max_tokens, cfg.eos_after))
        finish = "length" if n == max_tokens else "stop"
        ttft = req.get("ref_ttft_ms", cfg.ttft_s * 1e3) / 1e3
        itl = req.get("ref_itl_ms", cfg.itl_s * 1e3) / 1e3
        rid = headers.get("x-request-id", "")
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": n,
            "total_tokens": prompt_tokens + n,
        }
        if cfg.cache_report:
            usage["prompt_tokens_details"] = {"cached_tokens": cached}
        extra = {
            "endpoint": "chat" if chat else "completions",
            "prompt_tokens": prompt_tokens,
            "output_tokens": n,
            "ttft_ms": ttft * 1e3,
            "itl_ms": itl * 1e3,
            "cached_tokens": cached,
        }
        if cfg.log_prompts:
            extra["prompt_ids"] = prompt_ids
        if not req.get("stream"):
            return self._respond_whole(chat, n, usage, finish, ttft + max(n - 1, 0) * itl)
        base = {"id": "cmpl-" + rid, "created": int(time.time()), "model": cfg.model}
        # ref_empty_text: every token's text is empty, as when the tokenizer lacks the ids the
        # model draws (a dummy model's small tokenizer) or a token is half a UTF-8 character.
        piece = "" if req.get("ref_empty_text") else " a"
        if chat:
            base["object"] = "chat.completion.chunk"

            def choice(fr):
                return {"index": 0, "delta": {"content": piece}, "finish_reason": fr}
        else:
            base["object"] = "text_completion"

            def choice(fr):
                return {"index": 0, "text": piece, "logprobs": None, "finish_reason": fr}

        tail = b""
        so = req.get("stream_options") or {}
        if so.get("include_usage"):
            tail += sse_event({**base, "choices": [], "usage": usage})
        tail += sse_event("[DONE]") + b"0\r\n\r\n"
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        if chat:  # like vLLM: a role-only first chunk right away, carrying no generated text
            self.transport.write(
                sse_event(
                    {
                        **base,
                        "choices": [
                            {
                                "index": 0,
                                "delta": {"role": "assistant", "content": ""},
                                "finish_reason": None,
                            }
                        ],
                    }
                )
            )
        srv = self.server
        srv.active += 1
        srv.max_active = max(srv.max_active, srv.active)
        extra["active_at_recv"] = srv.active
        self.stream = Stream(
            self,
            rid,
            t_first_byte,
            t_recv,
            n,
            ttft,
            itl,
            sse_event({**base, "choices": [choice(None)]}),
            sse_event({**base, "choices": [choice(finish)]}),
            tail,
            extra,
        )
        srv.streams.add(self.stream)
        srv.admit(self.stream, self.loop)

    def _respond_whole(self, chat, n, usage, finish, delay) -> None:
        text = " a" * n
        choice = (
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}
            if chat
            else {"index": 0, "text": text, "finish_reason": finish}
        )
        obj = {
            "id": "cmpl-ref",
            "object": "chat.completion" if chat else "text_completion",
            "model": self.cfg.model,
            "choices": [choice],
            "usage": usage,
        }
        self.loop.call_later(delay, self.respond, 200, obj)

    def stream_done(self, s: Stream, t_end: float) -> None:
        self.stream = None
        srv = self.server
        srv.active -= 1
        srv.streams.discard(s)
        srv.released(s, self.loop)
        rec = s.truth(t_end)
        rec["max_active_proc"] = srv.max_active
        srv.log(rec)
        if self.close_after and s.state == "done":
            self.transport.close()
        elif self.buf and s.state == "done":
            self.data_received(b"")


