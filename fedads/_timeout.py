"""The one timeout concept: seconds a party may take to answer one message.

Its own tiny module so that the command line can show the default without importing
:mod:`fedads.protocol` (which loads torch: seconds for ``fedads --help`` or ``fedads world``).
"""

DEFAULT_TIMEOUT_S = 600.0
"""Default seconds a party may take to answer one message (``ProtocolConfig.timeout_s``)."""
