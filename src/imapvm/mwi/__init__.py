"""imapvm.mwi: message waiting that follows the mailbox (see DESIGN.md, principles 4 and 5).

`MwiEngine` composes the counts tracker (`tracker.py`), the watchers the stores hand out
(`storage/watching.py`; IMAP's NOTIFY/IDLE watcher in `storage/imap/watch.py`) and the sinks
(`sinks.py`, `ami.py`, `webhook.py`).
"""

from imapvm.mwi.ami import AmiSink
from imapvm.mwi.engine import MwiEngine, sinks_from_config
from imapvm.mwi.model import MwiUpdate
from imapvm.mwi.sinks import CallbackSink, ExternNotifySink, Sink, SinkFanout
from imapvm.mwi.tracker import CountsTracker
from imapvm.mwi.webhook import WebhookSink
from imapvm.storage.watching import WatchOptions

__all__ = [
    "AmiSink",
    "CallbackSink",
    "CountsTracker",
    "ExternNotifySink",
    "MwiEngine",
    "MwiUpdate",
    "Sink",
    "SinkFanout",
    "WatchOptions",
    "WebhookSink",
    "sinks_from_config",
]
