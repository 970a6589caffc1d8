"""The HTTP service under faults (tools/server_faults.py at a small scale against the real server, 2 workers):
a worker SIGKILLed under load, clients vanishing mid-body and mid-response, a 200-connection burst, pipelining,
oversized headers, foreign containers and a mixed soak. Every good request must get its pre-fault answer."""
from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def report(feature_model_name):
    from codec.zoo import model_cards

    import server_faults

    others = [name for name, card in model_cards().items() if card.kind == "feature" and name != feature_model_name]
    if not others:
        pytest.skip("needs a second shipped feature model")
    return server_faults.run(feature_model_name, others[0], server_faults.SCENARIOS, scale=0.05, soak_seconds=120)


def test_a_killed_worker_is_replaced_and_no_request_is_lost_or_hangs(report):
    result = report["scenarios"]["worker_kill"]
    assert result["correct"] == result["requests"] and result["hangs"] == 0 and result["wrong_or_failed"] == 0
    assert result["worker_replaced_after_s"] is not None and result["answers_correct_after_replacement"]


def test_clients_that_vanish_do_not_hurt_the_server(report):
    result = report["scenarios"]["disconnects"]
    assert result["answers_correct_after"] and result["no_worker_died"]


def test_a_burst_of_200_connections_is_answered(report):
    result = report["scenarios"]["burst"]
    assert result["connections"] == 200 and result["correct"] == 200


def test_pipelined_requests_are_answered_in_order(report):
    result = report["scenarios"]["pipelined"]
    assert result["answered_in_order"] == result["connections"] > 0


def test_oversized_headers_are_refused(report):
    status = report["scenarios"]["big_headers"]["status"]
    # what arrives in one socket read reaches the app (431); over several reads h11 refuses more than 16 KiB
    # unfinished with 400, or closes: refused either way
    assert status["2000 header lines"] in (400, 431) and status["one 64 KiB header"] in (0, 400, 431)
    assert status["one 1 MiB header"] in (0, 400)
    assert report["scenarios"]["big_headers"]["answers_correct_after"]


def test_containers_for_another_model_get_400_with_the_reason(report):
    answers = report["scenarios"]["other_model"]["answers"]
    assert all(answer["status"] == 400 for answer in answers.values())
    assert any("this server runs" in answer["error"] for answer in answers.values())


def test_mixed_soak_keeps_answering_and_memory_flat(report):
    result = report["scenarios"]["soak"]
    assert result["correct"] == result["sent"] >= 200 and result["hangs"] == 0, result  # the figures if it fails
    memory = result["server_rss_mib"]
    assert memory["last_quarter_max"] <= memory["first_quarter_max"] * 1.05 + 8, result
    assert report["ok"]


def test_the_app_answers_431_above_its_header_limits():
    import asyncio

    from codec.split.server import MAX_HEADER_BYTES, MAX_HEADER_FIELDS, HeaderLimits

    def status_for(headers: list[tuple[bytes, bytes]]) -> int:
        reached, sent = [], []

        async def app(scope, receive, send):
            reached.append(True)
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b""})

        async def receive():
            return {"type": "http.request", "body": b""}

        async def send(message):
            sent.append(message)

        scope = {"type": "http", "method": "POST", "path": "/v1/infer", "headers": headers}
        asyncio.run(HeaderLimits(app)(scope, receive, send))
        return sent[0]["status"]

    assert status_for([(b"host", b"x")]) == 200
    assert status_for([(b"x-h%d" % i, b"v") for i in range(MAX_HEADER_FIELDS + 1)]) == 431
    assert status_for([(b"x-big", b"a" * MAX_HEADER_BYTES)]) == 431
