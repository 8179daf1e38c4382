"""imapvm.config (see DESIGN.md, Layers)."""
