"""imapvm.message (see DESIGN.md, Layers)."""
