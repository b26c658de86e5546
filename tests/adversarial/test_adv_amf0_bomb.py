"""ISSUE-8 class 2: one unauthenticated AMF0 command must not freeze the node.

An attacker sends a command message of almost 16 MiB made of tiny nested values (each a
byte on the wire, an object in memory): two connections before `connect`, one right
after a valid `connect`, all at once. Meanwhile the viewer must keep getting media, the
API must answer, RSS must stay bounded, and the node must close each attack connection.
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
    connect_command,
    rtmp_handshake,
    rtmp_message,
    send_in_blocks,
    set_chunk_size,
)

pytestmark = [pytest.mark.adversarial, pytest.mark.timeout(90)]

BOMB_BYTES = (16 << 20) - 4096  # just under the default max_message_bytes: the worst case today
CONNECTIONS = 3
CLOSE_WITHIN_S = 10.0


def _bomb_connection(conn: AttackConn, bomb: bytes, port: int, connected: bool) -> None:
    """Handshake, lift the chunk size to the maximum (and connect, if `connected`), then the
    whole command in one chunk."""
    rtmp_handshake(conn)
    conn.sock.settimeout(30)
    message = set_chunk_size(0xFFFFFF)
    if connected:
        message += connect_command(port, chunk_size=0xFFFFFF)
    send_in_blocks(conn, message + rtmp_message(3, 20, 0, bomb, 0xFFFFFF), block=1 << 20)


def test_amf0_bomb_before_connect(harness: Harness) -> None:
    before = amf0_bomb(BOMB_BYTES)
    after = amf0_bomb(BOMB_BYTES, name="FCPublish")
    port = harness.node.rtmp_port
    with (
        harness.attack_guard("AMF0 bomb before connect", max_log_lines=3 * CONNECTIONS) as guard,
        AttackSockets() as attack,
    ):
        conns = [attack.open(port, "amf0 bomb", source=attacker_address(i)) for i in range(CONNECTIONS)]
        with ThreadPoolExecutor(CONNECTIONS) as pool:  # at once, as three attackers would
            futures = [
                pool.submit(_bomb_connection, c, after if i == 0 else before, port, i == 0)
                for i, c in enumerate(conns)
            ]
            for future in futures:
                future.result(timeout=40)
        attack.wait_closed_by_node(CLOSE_WITHIN_S)
        guard.note(attack.summary())
        assert not attack.still_open(), f"the node left attack connections open:\n{attack.summary()}"
