"""DHCPv6 (RFC 8415) single-lease responder and router advertisements (RFC 4861).

`config` holds what is handed out, `codec` turns bytes into messages and back,
`responder` is the pure lease policy, `ra` builds router advertisements and
times them, and `server` is the socket loop that serves both on a bridge.
"""
