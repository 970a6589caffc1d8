"""The one exception type users of `codec` need to catch."""


class CodecError(Exception):
    """Bad input, corrupt or foreign bitstream, or a limit exceeded: always a one-line message."""
