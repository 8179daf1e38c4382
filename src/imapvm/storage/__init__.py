"""imapvm.storage (see DESIGN.md, Layers)."""
