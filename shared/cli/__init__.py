"""The CLI edge's plumbing: one-line errors and exit codes, default paths, progress, display."""
