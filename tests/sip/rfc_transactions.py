# ruff: noqa: E501 - one transition per line, aligned like the RFC figures
"""The four transaction state machines, transcribed from the RFCs' figures for the tests.

Written from RFC 3261 §17 (Figures 5-8) and RFC 6026 §7 (Figures 5 and 7, the Accepted
state), one line per (state, input), independently of ``voipalert/sip/transaction.py``:
a wrong row in the implementation's table disagrees with this one. Lines marked
``[ours]`` are inputs the figures do not show (a late or duplicated message, an ICMP
error after the fact); the implementation must absorb them (§17.1.3, §17.2.3: a
transaction never fails on an unexpected message), and the line says how.

Format: ``state | input -> next | actions | start timers | stop timers``.
"""

from __future__ import annotations

from typing import Final

CLIENT_INVITE: Final = """
Calling    | Timer A           -> Calling    | send request      | A   |       # Fig. 5: reset A, INVITE sent
Calling    | Timer B           -> Terminated | timeout           |     |       # Fig. 5: inform TU
Calling    | transport error   -> Terminated | transport failed  |     |       # Fig. 5
Calling    | 1xx response      -> Proceeding | pass up           |     | A B   # Fig. 5: 1xx to TU
Calling    | 2xx response      -> Accepted   | pass up           | M   | A B   # RFC 6026 Fig. 5
Calling    | 3xx-6xx response  -> Completed  | send ACK, pass up | D   | A B   # Fig. 5: ACK sent, resp. to TU
Proceeding | 1xx response      -> Proceeding | pass up           |     |       # Fig. 5
Proceeding | 2xx response      -> Accepted   | pass up           | M   |       # RFC 6026 Fig. 5
Proceeding | 3xx-6xx response  -> Completed  | send ACK, pass up | D   |       # Fig. 5
Proceeding | transport error   -> Terminated | transport failed  |     |       # §17.1.4
Accepted   | 2xx response      -> Accepted   | pass up           |     |       # RFC 6026 §7.2: each 2xx to the TU
Accepted   | Timer M           -> Terminated |                   |     |       # RFC 6026 Fig. 5
Accepted   | 1xx response      -> Accepted   |                   |     |       # [ours] late, absorbed
Accepted   | 3xx-6xx response  -> Accepted   |                   |     |       # [ours] another fork's failure, absorbed
Accepted   | transport error   -> Accepted   |                   |     |       # [ours] the TU owns the dialog now
Completed  | 3xx-6xx response  -> Completed  | send ACK          |     |       # Fig. 5: retransmitted final, ACK again
Completed  | Timer D           -> Terminated |                   |     |       # Fig. 5
Completed  | 1xx response      -> Completed  |                   |     |       # [ours] late, absorbed
Completed  | 2xx response      -> Completed  |                   |     |       # [ours] absorbed
Completed  | transport error   -> Terminated |                   |     |       # Fig. 5 says inform TU; [ours] the TU already has the final response
"""

CLIENT_NON_INVITE: Final = """
Trying     | Timer E           -> Trying     | send request      | E   |       # Fig. 6: E = min(2E, T2)
Trying     | Timer F           -> Terminated | timeout           |     |       # Fig. 6: inform TU
Trying     | transport error   -> Terminated | transport failed  |     |       # Fig. 6
Trying     | 1xx response      -> Proceeding | pass up           |     |       # Fig. 6
Trying     | 2xx response      -> Completed  | pass up           | K   | E F   # Fig. 6: 200-699 to TU
Trying     | 3xx-6xx response  -> Completed  | pass up           | K   | E F   # Fig. 6
Proceeding | Timer E           -> Proceeding | send request      | E   |       # Fig. 6: E = T2
Proceeding | Timer F           -> Terminated | timeout           |     |       # Fig. 6
Proceeding | transport error   -> Terminated | transport failed  |     |       # Fig. 6
Proceeding | 1xx response      -> Proceeding | pass up           |     |       # Fig. 6
Proceeding | 2xx response      -> Completed  | pass up           | K   | E F   # Fig. 6
Proceeding | 3xx-6xx response  -> Completed  | pass up           | K   | E F   # Fig. 6
Completed  | Timer K           -> Terminated |                   |     |       # Fig. 6
Completed  | 1xx response      -> Completed  |                   |     |       # [ours] retransmissions absorbed
Completed  | 2xx response      -> Completed  |                   |     |       # [ours]
Completed  | 3xx-6xx response  -> Completed  |                   |     |       # [ours]
Completed  | transport error   -> Completed  |                   |     |       # [ours] nothing left to send
"""

SERVER_INVITE: Final = """
Proceeding | request retransmission -> Proceeding | send response |     |       # Fig. 7: INVITE, send response
Proceeding | ACK               -> Proceeding |                   |     |       # [ours] stray ACK absorbed
Proceeding | TU sends 1xx      -> Proceeding | send response     |     |       # Fig. 7
Proceeding | TU sends 2xx      -> Accepted   | send response     | L   |       # RFC 6026 Fig. 7
Proceeding | TU sends 3xx-6xx  -> Completed  | send response     | G H |       # Fig. 7
Proceeding | transport error   -> Terminated | transport failed  |     |       # Fig. 7: inform TU
Completed  | request retransmission -> Completed | send response |     |       # Fig. 7
Completed  | Timer G           -> Completed  | send response     | G   |       # Fig. 7
Completed  | Timer H           -> Terminated | timeout           |     |       # Fig. 7: inform TU
Completed  | ACK               -> Confirmed  |                   | I   | G H   # Fig. 7
Completed  | transport error   -> Terminated | transport failed  |     |       # Fig. 7
Confirmed  | ACK               -> Confirmed  |                   |     |       # Fig. 7: absorbed
Confirmed  | Timer I           -> Terminated |                   |     |       # Fig. 7
Confirmed  | request retransmission -> Confirmed |             |     |       # [ours] absorbed
Confirmed  | transport error   -> Confirmed  |                   |     |       # [ours] nothing left to send
Accepted   | request retransmission -> Accepted |              |     |       # RFC 6026 Fig. 7: absorbed
Accepted   | ACK               -> Accepted   | pass up           |     |       # RFC 6026 Fig. 7: ACK to TU
Accepted   | TU sends 2xx      -> Accepted   | send response     |     |       # RFC 6026 Fig. 7
Accepted   | Timer L           -> Terminated |                   |     |       # RFC 6026 Fig. 7
Accepted   | transport error   -> Accepted   | transport failed  |     |       # RFC 6026 Fig. 7: Transport Err., inform TU
"""

SERVER_NON_INVITE: Final = """
Trying     | request retransmission -> Trying | (none)           |     |       # Fig. 8: absorbed, nothing to resend yet
Trying     | ACK               -> Trying     |                   |     |       # [ours]
Trying     | TU sends 1xx      -> Proceeding | send response     |     |       # Fig. 8
Trying     | TU sends 2xx      -> Completed  | send response     | J   |       # Fig. 8: 200-699
Trying     | TU sends 3xx-6xx  -> Completed  | send response     | J   |       # Fig. 8
Trying     | transport error   -> Terminated | transport failed  |     |       # §17.2.4
Proceeding | request retransmission -> Proceeding | send response |    |       # Fig. 8
Proceeding | ACK               -> Proceeding |                   |     |       # [ours]
Proceeding | TU sends 1xx      -> Proceeding | send response     |     |       # Fig. 8
Proceeding | TU sends 2xx      -> Completed  | send response     | J   |       # Fig. 8
Proceeding | TU sends 3xx-6xx  -> Completed  | send response     | J   |       # Fig. 8
Proceeding | transport error   -> Terminated | transport failed  |     |       # Fig. 8
Completed  | request retransmission -> Completed | send response |     |       # Fig. 8
Completed  | ACK               -> Completed  |                   |     |       # [ours]
Completed  | transport error   -> Terminated | transport failed  |     |       # Fig. 8
Completed  | Timer J           -> Terminated |                   |     |       # Fig. 8
"""

ACTIONS: Final = {
    "send request": "SEND_REQUEST",
    "send ACK": "SEND_ACK",
    "send response": "SEND_RESPONSE",
    "pass up": "PASS_UP",
    "timeout": "TIMEOUT",
    "transport failed": "TRANSPORT_FAILED",
    "(none)": None,
}
