"""Passes into and over the IR. Each module holds one pass, a pure function."""
