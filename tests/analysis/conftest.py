"""Tests of analysis/: collection, tables, figures, published numbers, golden files."""
