"""``gymrec-play --ray``: one planned run recorded by Ray actors across a cluster's nodes (docs/cluster.md)."""
