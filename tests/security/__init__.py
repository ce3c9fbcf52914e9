"""Attacks on the server and the SDK: hostile templates, edges, fuzzing, bad repositories."""
