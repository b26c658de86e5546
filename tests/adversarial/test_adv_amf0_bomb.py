"""ISSUE-8 class 2: one unauthenticated AMF0 command must not freeze the node.

Before `connect`, an attacker sends a command message of almost 16 MiB made of tiny
nested values (each a byte on the wire, an object in memory). Three such connections at
once; meanwhile the viewer must keep getting media, the API must answer, RSS must stay
bounded, and the node must close each attack connection.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from tests.adversarial.harness import Harness
from tests.adversarial.wire import (
    AttackConn,
    AttackSockets,
    amf0_bomb,
    attacker_address,
    rtmp_handshake,
    rtmp_message,
    send_in_blocks,
    set_chunk_size,
)

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(90)]

BOMB_BYTES = (16 << 20) - 4096  # just under the default max_message_bytes: the worst case today
CONNECTIONS = 3
CLOSE_WITHIN_S = 10.0


def _bomb_connection(conn: AttackConn, bomb: bytes) -> None:
    """Handshake, lift the chunk size to the maximum, then the whole command in one chunk."""
    rtmp_handshake(conn)
    conn.sock.settimeout(30)
    message = set_chunk_size(0xFFFFFF) + rtmp_message(3, 20, 0, bomb, 0xFFFFFF)
    send_in_blocks(conn, message, block=1 << 20)


def test_amf0_bomb_before_connect(harness: Harness) -> None:
    bomb = amf0_bomb(BOMB_BYTES)
    with (
        harness.attack_guard("AMF0 bomb before connect", max_log_lines=3 * CONNECTIONS) as guard,
        AttackSockets() as attack,
    ):
        conns = [
            attack.open(harness.node.rtmp_port, "amf0 bomb", source=attacker_address(i))
            for i in range(CONNECTIONS)
        ]
        with ThreadPoolExecutor(CONNECTIONS) as pool:  # at once, as three attackers would
            for future in [pool.submit(_bomb_connection, c, bomb) for c in conns]:
                future.result(timeout=40)
        attack.wait_closed_by_node(CLOSE_WITHIN_S)
        guard.note(attack.summary())
        assert not attack.still_open(), f"the node left attack connections open:\n{attack.summary()}"
