"""imapvm.audio (see DESIGN.md, Layers)."""
