"""imapvm.telephony (see DESIGN.md, Layers)."""
