"""imapvm.mwi (see DESIGN.md, Layers)."""
