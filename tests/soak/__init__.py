"""The soak: minutes of mixed load from both clients while commits land (``make soak``)."""
