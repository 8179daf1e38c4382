"""imapvm.ivr (see DESIGN.md, Layers)."""
