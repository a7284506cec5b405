"""Reproducers of open problems, kept until they are fixed (each module says what it shows and how to run it)."""
