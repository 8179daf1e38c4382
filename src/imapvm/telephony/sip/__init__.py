"""Sans-I/O SIP (RFC 3261): messages, URIs, transactions, dialogs and the UAS core.

Nothing in this package opens a socket or reads a clock: bytes and the current time go in,
messages to send, timer deadlines and events come out (the h11 pattern, see DESIGN.md).
"""
