"""gymrec-serve: the recorder with a browser as its window (one process per participant)."""
