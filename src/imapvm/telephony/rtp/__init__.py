"""RTP (RFC 3550) for G.711 calls: packets, RFC 4733 events, reordering, the paced session."""
