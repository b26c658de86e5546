"""ISSUE-8 class 3: partial messages in 1-byte chunks must cost about their size in memory.

Each attack connection sets a chunk size of 1 and sends part of a video message that
declares 8 MiB, one payload byte per chunk (two bytes on the wire per byte). Three
phases: before `connect`, after `connect`, and after `publish` (where media is allowed
and only a cap on real memory applies). The node must keep RSS under the limit and
serve the viewer and the API throughout; before `publish` it must close the connection.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.adversarial.harness import APP, Harness
from tests.adversarial.wire import (
    AttackConn,
    AttackSockets,
    attacker_address,
    command,
    connect_command,
    partial_message_in_one_byte_chunks,
    rtmp_handshake,
    send_in_blocks,
)

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(90)]

DECLARED = 8 << 20  # under the default max_message_bytes: the header alone is acceptable
PAYLOAD_BYTES = 1_000_000  # 2 MB on the wire per connection
CLOSE_WITHIN_S = 10.0
PHASES = ("before connect", "after connect", "after publish")


def _attack(conn: AttackConn, port: int, phase: str) -> None:
    rtmp_handshake(conn)
    conn.sock.settimeout(30)
    prelude = b""
    stream_id = 1
    if phase != "before connect":
        prelude += connect_command(port)
    if phase == "after publish":
        # Pipelined like ffmpeg does: createStream gets stream id 1 on a fresh connection.
        prelude += command("createStream", 2.0, None)
        prelude += command(
            "publish", 3.0, None, f"chunk-attack-{conn.sock.getsockname()[1]}", APP, stream_id=1
        )
    send_in_blocks(
        conn, prelude + partial_message_in_one_byte_chunks(DECLARED, PAYLOAD_BYTES, stream_id=stream_id)
    )


def test_one_byte_chunks_do_not_amplify_memory(harness: Harness) -> None:
    port = harness.node.rtmp_port
    with (
        harness.attack_guard("chunk size 1 amplification", max_log_lines=10) as guard,
        AttackSockets() as attack,
    ):
        conns = [attack.open(port, phase, source=attacker_address(i)) for i, phase in enumerate(PHASES)]
        with ThreadPoolExecutor(len(conns)) as pool:
            for future in [pool.submit(_attack, c, port, c.label) for c in conns]:
                future.result(timeout=60)
        attack.wait_closed_by_node(CLOSE_WITHIN_S, label="before connect")
        attack.wait_closed_by_node(CLOSE_WITHIN_S, label="after connect")
        guard.note(attack.summary())
        refused = [c for c in conns if c.label != "after publish"]
        assert not [c for c in refused if c.open], (
            "the node kept a connection that sent a huge partial message before publish:\n" + attack.summary()
        )
