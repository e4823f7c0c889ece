"""The Hugging Face Hub: the client's errors translated, credentials, the HTTP timeout."""
