"""Schemathesis hooks for tests/api/schemathesis.rs (loaded through SCHEMATHESIS_HOOKS)."""

import schemathesis


@schemathesis.serializer("application/sdp")
def sdp(ctx, value):
    """WHIP offers are SDP text: send the generated string as it is (bytes stay bytes)."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8")
