"""Voicemail to e-mail: the notification Asterisk sends besides storing the message.

Layer: above ``storage`` and ``message`` (it reads stored e-mails and may delete a message for
``delete=yes``), below the server, which wires it to the outbox; ``ivr`` and ``telephony`` never
see it. Modules: ``compose`` (the owner's e-mail and the pager notice, from the stored e-mail),
``transport`` (``mailcmd`` or SMTP submission), ``queue`` (the durable mail queue and its retry
worker) and ``notifier`` (what happens once a voicemail is stored).
"""
