"""Helpers shared by the test suites: git repositories and running servers."""
