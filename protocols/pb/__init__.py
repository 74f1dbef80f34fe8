"""Generated protobuf code (from proto/; regenerate with proto/generate.sh)."""
