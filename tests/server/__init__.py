"""Tests of the promptory server: files, store, HTTP API, keys, CLI."""
