"""The pure core: plain data in, plain data out (what a container wants, the flag table, the
plan). No I/O, no threads; imports nothing from the packages above it."""
