"""The spool: the episode format, reading it, writing it crash-safely, and recovering orphans."""
