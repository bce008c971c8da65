"""reply stage."""
