"""Fault injection: the SDK against a server that stalls, resets, drips or garbles."""
