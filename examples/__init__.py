"""Ready job files an owner can copy, and the script that writes their data."""
