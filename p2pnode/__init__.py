"""p2pnode package."""
