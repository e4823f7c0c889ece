"""Env backends: which package owns an env id, making the env, and starting its episodes."""
